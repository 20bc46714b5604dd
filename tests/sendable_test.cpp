// offload::Sendable: which types may cross to another thread. Most checks are compile-time
// (static_assert); the rejected kinds also have compile-fail tests in compile_fail/ that check
// the error message.
#include <offload/sendable.hpp>
#include <offload/shared_buffer.hpp>

#include <any>
#include <array>
#include <deque>
#include <forward_list>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <optional>
#include <queue>
#include <set>
#include <span>
#include <stack>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "catch.hpp"

namespace {

using offload::Sendable;
using offload::detail::Diagnosis;
using offload::detail::Unsendable;

struct Plain {
  int x = 0;
  std::string name;
};

struct HoldsAPointerButIsFine {  // the library cannot see inside: judged as a whole
  int* p = nullptr;
};

struct OptedIn {
  std::string_view view_of_static_storage;
};

struct OptedOut {
  int x = 0;
};

struct NotMovable {
  NotMovable() = default;
  NotMovable(NotMovable&&) = delete;
};

struct MoveOnly {
  MoveOnly() = default;
  MoveOnly(MoveOnly&&) = default;
  MoveOnly(const MoveOnly&) = delete;
};

}  // namespace

template <>
struct offload::is_sendable<OptedIn> : std::true_type {};
template <>
struct offload::is_sendable<OptedOut> : std::false_type {};

// --- accepted -------------------------------------------------------------------------------
static_assert(Sendable<int>);
static_assert(Sendable<double>);
static_assert(Sendable<const int>);
static_assert(Sendable<std::string>);
static_assert(Sendable<Plain>);
static_assert(Sendable<MoveOnly>);
static_assert(Sendable<HoldsAPointerButIsFine>);
static_assert(Sendable<std::unique_ptr<int>>);
static_assert(Sendable<std::unique_ptr<int[]>>);
static_assert(Sendable<std::shared_ptr<const int>>);
static_assert(Sendable<std::shared_ptr<const std::string>>);
static_assert(Sendable<std::vector<std::unique_ptr<Plain>>>);
static_assert(Sendable<std::map<std::string, std::vector<int>>>);
static_assert(Sendable<std::unordered_map<int, std::optional<std::string>>>);
static_assert(Sendable<std::set<std::string>>);
static_assert(Sendable<std::unordered_set<int>>);
static_assert(Sendable<std::deque<int>>);
static_assert(Sendable<std::list<Plain>>);
static_assert(Sendable<std::forward_list<int>>);
static_assert(Sendable<std::array<std::string, 3>>);
static_assert(Sendable<std::queue<int>>);
static_assert(Sendable<std::stack<std::string>>);
static_assert(Sendable<std::priority_queue<int>>);
static_assert(Sendable<std::pmr::vector<int>>);
static_assert(Sendable<std::pair<int, std::string>>);
static_assert(Sendable<std::tuple<int, std::string, std::vector<double>>>);
static_assert(Sendable<std::tuple<>>);
static_assert(Sendable<std::variant<int, std::string>>);
static_assert(Sendable<std::optional<std::shared_ptr<const Plain>>>);
static_assert(Sendable<std::function<void(int*)>>);  // opaque: judged as a whole
static_assert(Sendable<std::any>);
static_assert(Sendable<void (*)(int)>);  // code is immutable
static_assert(Sendable<int (*)(const std::string&)>);
static_assert(Sendable<offload::SharedBuffer<int>>);  // sharing on purpose
static_assert(Sendable<std::vector<offload::SharedBuffer<float>>>);
static_assert(Sendable<OptedIn>);
static_assert(Sendable<std::vector<OptedIn>>);  // an opt-in reaches containers

// --- rejected ---------------------------------------------------------------------------------
static_assert(!Sendable<int*>);
static_assert(!Sendable<const int*>);
static_assert(!Sendable<int* const>);
static_assert(!Sendable<void*>);
static_assert(!Sendable<int&>);
static_assert(!Sendable<const int&>);
static_assert(!Sendable<int&&>);
static_assert(!Sendable<std::reference_wrapper<int>>);
static_assert(!Sendable<std::string_view>);
static_assert(!Sendable<std::wstring_view>);
static_assert(!Sendable<std::span<int>>);
static_assert(!Sendable<std::span<const int, 4>>);
static_assert(!Sendable<std::shared_ptr<int>>);
static_assert(!Sendable<std::shared_ptr<Plain>>);
static_assert(!Sendable<std::weak_ptr<int>>);
static_assert(!Sendable<std::weak_ptr<const int>>);
static_assert(!Sendable<NotMovable>);
static_assert(!Sendable<std::mutex>);
static_assert(!Sendable<int[4]>);
static_assert(!Sendable<void>);
static_assert(!Sendable<OptedOut>);
static_assert(!Sendable<std::vector<std::string_view>>);
static_assert(!Sendable<std::vector<std::vector<int*>>>);
static_assert(!Sendable<std::optional<int*>>);
static_assert(!Sendable<std::tuple<int, std::span<int>>>);
static_assert(!Sendable<std::map<int, std::weak_ptr<int>>>);
static_assert(!Sendable<std::map<std::string_view, int>>);
static_assert(!Sendable<std::unordered_map<int, std::shared_ptr<int>>>);
static_assert(!Sendable<std::set<int*>>);
static_assert(!Sendable<std::deque<std::reference_wrapper<int>>>);
static_assert(!Sendable<std::array<int*, 2>>);
static_assert(!Sendable<std::pair<int, int&>>);
static_assert(!Sendable<std::variant<int, std::string_view>>);
static_assert(!Sendable<std::queue<int*>>);
static_assert(!Sendable<std::optional<OptedOut>>);  // an opt-out reaches containers
static_assert(!Sendable<std::pmr::vector<std::span<int>>>);

// --- the diagnosis names the innermost culprit and the reason ----------------------------------
static_assert(std::is_same_v<Diagnosis<std::vector<std::string_view>>::culprit, std::string_view>);
static_assert(Diagnosis<std::vector<std::string_view>>::problem == Unsendable::string_view);
static_assert(
    std::is_same_v<Diagnosis<std::map<int, std::weak_ptr<int>>>::culprit, std::weak_ptr<int>>);
static_assert(Diagnosis<std::map<int, std::weak_ptr<int>>>::problem == Unsendable::weak_ptr);
static_assert(Diagnosis<std::tuple<int, std::span<int>>>::problem == Unsendable::span);
static_assert(Diagnosis<std::optional<int*>>::problem == Unsendable::raw_pointer);
static_assert(Diagnosis<int&>::problem == Unsendable::reference);
static_assert(Diagnosis<std::reference_wrapper<int>>::problem == Unsendable::reference_wrapper);
static_assert(Diagnosis<std::shared_ptr<int>>::problem == Unsendable::shared_ptr_to_mutable);
static_assert(Diagnosis<std::vector<NotMovable>>::problem == Unsendable::not_move_constructible);
static_assert(std::is_same_v<Diagnosis<std::vector<std::optional<OptedOut>>>::culprit, OptedOut>);
static_assert(Diagnosis<std::vector<std::optional<OptedOut>>>::problem == Unsendable::opted_out);
// The first offending part is blamed, left to right.
static_assert(Diagnosis<std::tuple<int*, std::string_view>>::problem == Unsendable::raw_pointer);

// check_sendable<T>() compiles to nothing for accepted types (rejections: see compile_fail/).
static_assert((offload::detail::check_sendable<int>(), true));
static_assert((offload::detail::check_sendable<std::vector<std::map<int, std::string>>>(), true));
static_assert((offload::detail::check_sendable<OptedIn>(), true));
static_assert((offload::detail::check_sendable<offload::SharedBuffer<int>>(), true));

TEST_CASE("Sendable verdicts are also available at run time", "[sendable]") {
  CHECK(offload::is_sendable_v<std::vector<int>>);
  CHECK_FALSE(offload::is_sendable_v<std::vector<int*>>);
  CHECK(offload::is_sendable<std::unique_ptr<Plain>>::value);
  CHECK_FALSE(offload::is_sendable<std::shared_ptr<Plain>>::value);
}
