// A fixed pool of fixed-size byte chunks, mapped once at start-up (pages are
// touched only when used), handed out and taken back as indices. One per
// shard: no locks, no allocation after start.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace zt::dataplane {

class chunk_pool {
public:
    chunk_pool() = default;
    chunk_pool(const chunk_pool&) = delete;
    chunk_pool& operator=(const chunk_pool&) = delete;
    ~chunk_pool() {
        if (_base) {
            munmap(_base, _bytes);
        }
    }

    /// Maps `count` chunks of `size` bytes. False when the mapping fails.
    bool init(uint32_t count, uint32_t size) noexcept {
        _bytes = size_t(count) * size;
        void* p = mmap(nullptr, _bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            return false;
        }
        _base = static_cast<std::byte*>(p);
        _size = size;
        _free.reset(new (std::nothrow) uint32_t[count]);
        if (!_free) {
            return false;
        }
        for (uint32_t i = 0; i < count; ++i) {
            _free[i] = count - 1 - i;
        }
        _free_count = count;
        _count = count;
        return true;
    }

    static constexpr uint32_t none = 0xffffffffu;

    /// A free chunk, or none when all are in use.
    uint32_t acquire() noexcept { return _free_count ? _free[--_free_count] : none; }
    void release(uint32_t i) noexcept { _free[_free_count++] = i; }
    std::byte* at(uint32_t i) const noexcept { return _base + size_t(i) * _size; }
    uint32_t in_use() const noexcept { return _count - _free_count; }

private:
    std::byte* _base = nullptr;
    size_t _bytes = 0;
    uint32_t _size = 0;
    uint32_t _count = 0;
    uint32_t _free_count = 0;
    std::unique_ptr<uint32_t[]> _free;
};

} // namespace zt::dataplane
