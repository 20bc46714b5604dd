#ifndef OFFLOAD_DETAIL_BLOCK_CACHE_HPP
#define OFFLOAD_DETAIL_BLOCK_CACHE_HPP

/// @file detail/block_cache.hpp
/// Where coroutine frames and the shared states of futures come from: a per-thread cache of
/// freed blocks, by size class, so a task that starts and ends in steady state (a fork-join
/// child, a task awaited in a loop), or a future made and consumed, takes nothing from the
/// global heap.
///
/// A block may be freed on another thread than the one that made it (a stolen child, a task
/// that moved with resume_on(), a future consumed by another thread than its producer); it
/// then joins that thread's cache. A cache keeps at most two
/// batches per class and hands the excess to a process-wide depot, where a cache that runs dry
/// takes a batch before it asks the heap: frames flow back to the threads that make them, so
/// fork-join in steady state takes nothing from the heap however the children migrate. Under
/// AddressSanitizer free blocks are poisoned (but their first 16 bytes, the free list's
/// links), so a use after free of a block is still reported.
///
/// The thread-local state is reached only through a function that is never inlined nor merged
/// (clang before 17 may keep a thread_local's address across a suspension point; see
/// trampoline.hpp).

#include <cstddef>
#include <mutex>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define OFFLOAD_DETAIL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OFFLOAD_DETAIL_ASAN 1
#endif
#endif
#ifdef OFFLOAD_DETAIL_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace offload {
inline namespace v0 {
namespace detail {

/// What a free block holds: the next free block of its list, and (the first block of a batch
/// in the depot) the next batch.
struct FreeBlock {
  FreeBlock* next;
  FreeBlock* next_batch;
};

inline constexpr std::size_t block_granule = 64;  // size classes of 64 bytes ...
inline constexpr std::size_t block_classes = 16;  // ... up to 1 KiB; larger: global heap
inline constexpr std::size_t block_batch = 64;    // blocks moved to / from the depot at once

inline void poison_block([[maybe_unused]] void* block, [[maybe_unused]] std::size_t size) noexcept {
#ifdef OFFLOAD_DETAIL_ASAN
  ASAN_POISON_MEMORY_REGION(block, size);
#endif
}
inline void unpoison_block([[maybe_unused]] void* block, [[maybe_unused]] std::size_t size) noexcept {
#ifdef OFFLOAD_DETAIL_ASAN
  ASAN_UNPOISON_MEMORY_REGION(block, size);
#endif
}

/// Poisons / unpoisons a free block of `size` bytes but its links, which stay readable:
/// LeakSanitizer does not follow pointers stored in poisoned memory, and would report every
/// cached block as leaked.
inline void poison_free_block(FreeBlock* block, std::size_t size) noexcept {
  poison_block(reinterpret_cast<char*>(block) + sizeof(FreeBlock), size - sizeof(FreeBlock));
}
inline void unpoison_free_block(FreeBlock* block, std::size_t size) noexcept {
  unpoison_block(reinterpret_cast<char*>(block) + sizeof(FreeBlock), size - sizeof(FreeBlock));
}

/**
 * The process-wide depot of free blocks, in batches of block_batch blocks: a thread whose cache
 * overflows hands a batch here, a thread whose cache runs dry takes one. Frames that migrate
 * (made on one thread, freed on another, as stolen fork-join children are) so come back to
 * the threads that make them, and the total stays bounded by what is in use at the peak.
 * Never destroyed (threads may still free blocks while static destructors run); what it holds
 * stays reachable from it.
 */
class BlockDepot {
 public:
  static BlockDepot& instance() {
    static BlockDepot* depot = new BlockDepot();
    return *depot;
  }

  void put(std::size_t c, FreeBlock* batch) noexcept {
    std::lock_guard lock(mutex_);
    batch->next_batch = batches_[c];
    batches_[c] = batch;
  }

  FreeBlock* take(std::size_t c) noexcept {
    std::lock_guard lock(mutex_);
    FreeBlock* batch = batches_[c];
    if (batch != nullptr) batches_[c] = batch->next_batch;
    return batch;
  }

 private:
  BlockDepot() = default;
  std::mutex mutex_;
  FreeBlock* batches_[block_classes] = {};
};

/// One thread's free blocks: per class, a list of at most two batches' worth.
class BlockCache {
 public:
  BlockCache() = default;
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;
  ~BlockCache() {  // the thread ends: its blocks go to the depot, for the other threads
    for (std::size_t c = 0; c < block_classes; ++c) {
      while (count_[c] >= block_batch) BlockDepot::instance().put(c, split_batch(c));
      while (FreeBlock* block = free_[c]) {
        free_[c] = block->next;
        ::operator delete(block);
      }
    }
  }

  /// Index of the size class of a block of `size` bytes, or block_classes if none fits.
  static constexpr std::size_t class_of(std::size_t size) noexcept {
    const std::size_t c = (size + block_granule - 1) / block_granule;
    return c == 0 ? 0 : (c <= block_classes ? c - 1 : block_classes);
  }

  /// A block of the class's whole size, or nullptr when neither this cache nor the depot
  /// has one.
  void* pop(std::size_t c) noexcept {
    if (free_[c] == nullptr) {
      free_[c] = BlockDepot::instance().take(c);
      if (free_[c] == nullptr) return nullptr;
      count_[c] = block_batch;
    }
    FreeBlock* block = free_[c];
    free_[c] = block->next;
    --count_[c];
    unpoison_free_block(block, (c + 1) * block_granule);
    return block;
  }

  /// Keeps `block` (of class c) for reuse; a full list first hands a batch to the depot.
  void push(void* block, std::size_t c) noexcept {
    if (count_[c] == 2 * block_batch) BlockDepot::instance().put(c, split_batch(c));
    auto* free_block = static_cast<FreeBlock*>(block);
    free_block->next = free_[c];
    free_block->next_batch = nullptr;
    free_[c] = free_block;
    ++count_[c];
    poison_free_block(free_block, (c + 1) * block_granule);
  }

 private:
  /// Detaches the first block_batch blocks of class c's list, as one batch.
  FreeBlock* split_batch(std::size_t c) noexcept {
    FreeBlock* batch = free_[c];
    FreeBlock* last = batch;
    for (std::size_t i = 1; i < block_batch; ++i) last = last->next;
    free_[c] = last->next;
    last->next = nullptr;
    count_[c] -= block_batch;
    return batch;
  }

  FreeBlock* free_[block_classes] = {};
  std::size_t count_[block_classes] = {};
};

/// This thread's cache, or nullptr once the thread is ending (its cache is gone; blocks freed
/// by thread-exit destructors then go straight back to the global heap).
[[gnu::noinline]] inline BlockCache* this_thread_blocks() noexcept {
  asm volatile("" ::: "memory");  // never assumed free of side effects: calls are not merged
  struct Owner {
    BlockCache cache;
    BlockCache** slot;
    ~Owner() { *slot = nullptr; }
  };
  thread_local BlockCache* current = nullptr;  // trivially destructible: readable at exit
  thread_local bool made = false;
  if (!made) {
    made = true;
    thread_local Owner owner{{}, &current};
    current = &owner.cache;
  }
  return current;
}

/// Allocates a block of `size` bytes (a coroutine frame, a shared state). Throws std::bad_alloc like operator new.
inline void* allocate_block(std::size_t size) {
  const std::size_t c = BlockCache::class_of(size);
  if (c == block_classes) return ::operator new(size);
  if (BlockCache* cache = this_thread_blocks()) {
    if (void* block = cache->pop(c)) return block;
  }
  return ::operator new((c + 1) * block_granule);
}

/// Frees a block made by allocate_block(size). Never throws.
inline void deallocate_block(void* block, std::size_t size) noexcept {
  const std::size_t c = BlockCache::class_of(size);
  if (c != block_classes) {
    if (BlockCache* cache = this_thread_blocks()) {
      cache->push(block, c);
      return;
    }
  }
  ::operator delete(block);
}

/// Gives a class (a coroutine's promise, a shared state) recycled blocks: derive from it.
/// Deleting through a virtual destructor passes the dynamic type's size, as needed.
struct Recycled {
  static void* operator new(std::size_t size) { return allocate_block(size); }
  static void operator delete(void* block, std::size_t size) noexcept {
    deallocate_block(block, size);
  }
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_BLOCK_CACHE_HPP
