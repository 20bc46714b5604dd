// The control: the same harness on a valid call must build, or every test here is moot.
#include <offload/process_pool.hpp>

#include <string>
#include <vector>

struct Point {
  int x;
  int y;
};
template <>
struct offload::Codec<Point> {
  static void encode(offload::Writer& out, const Point& p) {
    out.write(p.x);
    out.write(p.y);
  }
  static Point decode(offload::Reader& in) {
    const int x = in.read<int>();
    const int y = in.read<int>();
    return Point{x, y};
  }
};

Point flip(const Point& p) { return Point{p.y, p.x}; }

int main() {
  offload::ProcessPool pool;
  auto lengths = pool.submit([](std::vector<std::string> words) { return words.size(); },
                             std::vector<std::string>{"a", "b"});
  return flip(pool.submit(flip, Point{1, 2}).get()).x + static_cast<int>(lengths.get()) - 3;
}
