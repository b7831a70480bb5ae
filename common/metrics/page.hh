// A page of counters in shared memory: the data plane's shards write their
// counters into it (each shard its own cache-line-aligned block, plain
// relaxed stores, no locks, no syscalls), and ztdns-control maps the same
// memfd read-only to render them (`ztdns metrics`, Prometheus text format).
//
// The page describes itself, so a control of another build still reads it:
//
//   header | names: one "<kind><name>\0" per slot | blocks: shards x stride
//
// kind is 'c' (a counter: only grows), 'g' (a gauge) or 'h' (one bucket of a
// histogram: the slots of one histogram are consecutive; bucket i counts
// values in [2^i, 2^(i+1)), the last one everything above).
//
// The memfd is sealed against grow, shrink and further seals before it is
// handed over: a reader's mapping can never fault (SIGBUS) on a shrunk file.
#pragma once

#include <fcntl.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace zt::metrics {

inline constexpr char magic[8] = {'Z', 'T', 'M', 'E', 'T', 'R', 'C', '1'};
inline constexpr uint32_t version = 1;
inline constexpr int required_seals = F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL;
inline constexpr size_t max_slots = 4096;
inline constexpr size_t max_blocks = 1024;

struct header {
    char magic[8];
    uint32_t version;
    uint32_t blocks;       ///< shards
    uint32_t slots;        ///< uint64 values per block (and names)
    uint32_t names_offset; ///< from the start of the page
    uint32_t names_size;
    uint32_t data_offset;  ///< 64-byte aligned
    uint32_t block_stride; ///< bytes, a multiple of 64, >= slots * 8
    uint32_t reserved;
};
static_assert(sizeof(header) == 40);

enum class kind : char { counter = 'c', gauge = 'g', histogram = 'h' };

struct slot_desc {
    kind k;
    std::string name;
};

/// The writer's side: creates, lays out and seals the page. Not copyable;
/// the mapping and the fd live as long as the object.
class page {
public:
    /// `block_bytes` is the size of one block (a struct of uint64 slots, in the
    /// order of `slots`). Returns nullptr and sets `err` on failure.
    static std::unique_ptr<page> create(const std::vector<slot_desc>& slots, size_t block_bytes, uint32_t blocks,
                                        std::string& err);
    ~page();
    page(const page&) = delete;
    page& operator=(const page&) = delete;

    /// Where block i's struct goes (64-byte aligned, zeroed).
    void* block(uint32_t i) const noexcept;
    /// The sealed memfd to hand to readers (still owned by the page).
    int fd() const noexcept { return _fd; }

private:
    page() = default;
    int _fd = -1;
    std::byte* _base = nullptr;
    size_t _size = 0;
    const header* _h = nullptr;
};

/// The reader's side: maps a page read-only after checking its seals and
/// layout. Owns the mapping (not the fd it was opened from).
class view {
public:
    /// Returns "" or why the page is refused. `fd` is not taken.
    std::string open(int fd);
    ~view();
    view() = default;
    view(view&& o) noexcept;
    view& operator=(view&& o) noexcept;
    view(const view&) = delete;
    view& operator=(const view&) = delete;

    bool valid() const noexcept { return _base != nullptr; }
    uint32_t blocks() const noexcept { return _base ? _h.blocks : 0; }
    const std::vector<slot_desc>& slots() const noexcept { return _slots; }
    /// Slot s of block b, read with a relaxed atomic load.
    uint64_t value(uint32_t b, uint32_t s) const noexcept;
    /// The sum over every block of the slot named `name` (0 when there is none).
    uint64_t total(std::string_view name) const noexcept;

private:
    void reset() noexcept;
    const std::byte* _base = nullptr;
    size_t _size = 0;
    header _h{}; ///< our checked copy: the writer could change the shared one
    std::vector<slot_desc> _slots;
};

/// Renders every view as Prometheus text exposition: `ztdns_<name>_total`
/// for counters, `ztdns_<name>` for gauges, `ztdns_<name>_bucket{le=...}`,
/// `_count` (and no `_sum`: buckets only) for histograms; labels pid and shard.
/// `pids[i]` labels views[i].
std::string render_prometheus(std::span<const view* const> views, std::span<const int> pids);

} // namespace zt::metrics
