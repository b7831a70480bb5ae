// Per-thread size-class pools behind wolfSSL_SetAllocators (see alloc.hh).
// Blocks are carved from one reserved region, so any pointer can be told ours
// or not by its address alone: memory that wolfSSL got before the allocator was
// installed (or blocks over 64 KiB, which go to malloc) is freed by free().
// A freed block goes to the freeing thread's list; a WOLFSSL lives and dies
// on one shard, so its blocks stay where they are used. Lists keep their
// high-water mark; nothing goes back to the system.
#include "common/tls/alloc.hh"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/memory.h>

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

namespace zt::tls {
namespace {

constexpr uint32_t classes = 11; // 64 B .. 64 KiB
constexpr size_t class_size(uint32_t c) noexcept { return size_t(64) << c; }
constexpr uint32_t no_class = 0xffffffffu;
constexpr size_t region_size = size_t(16) << 30; // virtual only (MAP_NORESERVE)
constexpr size_t refill_bytes = 64 * 1024;

struct alignas(16) header {
    uint64_t cls;  // size class
    uint64_t size; // requested size (for realloc)
};
static_assert(sizeof(header) == 16);

std::byte* g_region = nullptr;
std::atomic<size_t> g_used{0};
std::atomic<uint64_t> g_system_allocs{0};

struct free_block {
    free_block* next;
};

thread_local free_block* t_head[classes] = {};

bool ours(const void* p) noexcept {
    auto* b = static_cast<const std::byte*>(p);
    return g_region && b >= g_region && b < g_region + region_size;
}

uint32_t class_of(size_t n) noexcept {
    for (uint32_t c = 0; c < classes; ++c) {
        if (n <= class_size(c)) {
            return c;
        }
    }
    return no_class;
}

/// Carves a batch of blocks of class `c` from the region into this thread's list.
bool refill(uint32_t c) noexcept {
    size_t block = sizeof(header) + class_size(c);
    size_t count = std::max<size_t>(1, refill_bytes / block);
    size_t at = g_used.fetch_add(count * block, std::memory_order_relaxed);
    if (at + count * block > region_size) {
        return false;
    }
    g_system_allocs.fetch_add(1, std::memory_order_relaxed);
    for (size_t i = 0; i < count; ++i) {
        auto* h = reinterpret_cast<header*>(g_region + at + i * block);
        h->cls = c;
        auto* b = reinterpret_cast<free_block*>(h + 1);
        b->next = t_head[c];
        t_head[c] = b;
    }
    return true;
}

void* pool_malloc(size_t n) noexcept {
    uint32_t c = class_of(n);
    if (c == no_class || (!t_head[c] && !refill(c))) {
        g_system_allocs.fetch_add(1, std::memory_order_relaxed);
        return std::malloc(n);
    }
    free_block* b = t_head[c];
    t_head[c] = b->next;
    reinterpret_cast<header*>(b)[-1].size = n;
    return b;
}

void pool_free(void* p) noexcept {
    if (!ours(p)) {
        std::free(p);
        return;
    }
    uint64_t c = static_cast<header*>(p)[-1].cls;
    auto* b = static_cast<free_block*>(p);
    b->next = t_head[c];
    t_head[c] = b;
}

void* pool_realloc(void* p, size_t n) noexcept {
    if (!p) {
        return pool_malloc(n);
    }
    if (!ours(p)) {
        return std::realloc(p, n);
    }
    header* h = static_cast<header*>(p) - 1;
    if (n <= class_size(static_cast<uint32_t>(h->cls))) {
        h->size = n;
        return p;
    }
    void* q = pool_malloc(n);
    if (q) {
        std::memcpy(q, p, std::min<size_t>(h->size, n));
        pool_free(p);
    }
    return q;
}

} // namespace

void install_pooled_allocator() noexcept {
    void* r = mmap(nullptr, region_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED) {
        return; // strict overcommit: wolfSSL keeps malloc
    }
    g_region = static_cast<std::byte*>(r);
    wolfSSL_SetAllocators(pool_malloc, pool_free, pool_realloc);
}

uint64_t system_allocations() noexcept { return g_system_allocs.load(std::memory_order_relaxed); }

} // namespace zt::tls
