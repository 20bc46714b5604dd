// Must compile: the run_service shapes the service_* files break, written correctly. Proves
// those fail for their own reason, not because of the harness or the header.
#include <memory>
#include <offload/service.hpp>
#include <string>
int main() {
  offload::ThreadPool pool{{.threads = 1}};
  auto length = offload::run_service(
      pool, [](const std::string& text) { return text.size(); }, std::string("hello"));
  auto data = std::make_unique<int>(1);
  auto moved = offload::run_service(
      pool, [](std::unique_ptr<int> p) { return *p; }, std::move(data));
  auto [tx, rx] = offload::unbounded_channel<long>();
  auto job = offload::run_service(
      pool, [](int x, offload::Sender<long>& out) { return out.send(long{x}); }, 1, std::move(tx));
  const bool ok = length.get() == 5 && moved.get() == 1 && job.get() == offload::ChannelStatus::ok;
  return ok && rx.receive() == 1L ? 0 : 1;
}
