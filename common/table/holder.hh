// The route table snapshot holder: the data plane's control thread publishes
// validated tables; each shard switches at its loop boundary with one acquire
// load and acknowledges; a table is released once every shard has moved past
// it. Models: dnsdist GlobalStateHolder, Envoy runOnAllThreads.
#pragma once

#include "common/table/reader.hh"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace zt::table {

/// Owns the bytes of one table: a read-only mapping (munmapped on
/// destruction) or a 64-byte aligned heap copy. Move-only. Any thread, but
/// one at a time.
class blob {
public:
    blob() noexcept = default;
    /// Takes ownership of a mapping made with mmap(addr, len).
    static blob adopt_mapping(void* addr, size_t len) noexcept;
    /// Copies `bytes` into a new aligned heap buffer. Throws std::bad_alloc.
    static blob copy_of(std::span<const std::byte> bytes);
    /// An uninitialised aligned heap buffer of `len` bytes to fill. Throws std::bad_alloc.
    static blob allocate(size_t len);

    blob(blob&& o) noexcept;
    blob& operator=(blob&& o) noexcept;
    blob(const blob&) = delete;
    blob& operator=(const blob&) = delete;
    ~blob();

    std::span<const std::byte> bytes() const noexcept { return {static_cast<const std::byte*>(_addr), _len}; }
    /// Writable bytes of an allocate()d buffer; empty for a mapping.
    std::span<std::byte> writable() noexcept;
    bool mapped() const noexcept { return _mapped; }

private:
    void reset() noexcept;

    void* _addr = nullptr;
    size_t _len = 0;
    bool _mapped = false;
};

class holder {
    struct snapshot;
    struct alignas(64) slot {
        std::atomic<uint64_t> acked{0}; ///< seq of the snapshot the reader uses; 0: none yet
        std::atomic<bool> active{false};
    };

public:
    /// A shard's handle. Created on the control thread by add_reader(), then
    /// moved to its shard and used only there. It must not outlive the holder.
    class reader {
    public:
        reader(reader&& o) noexcept;
        reader& operator=(reader&&) = delete;
        reader(const reader&) = delete;
        ~reader(); ///< unregisters: the holder stops waiting for this reader

        /// Once per loop turn, on the shard thread: one acquire load; on a new
        /// table it switches and acknowledges (one release store). Returns true
        /// when it switched. Pointers into the previous table are invalid after
        /// a switch: never keep one across loop turns.
        bool refresh() noexcept {
            const snapshot* p = _holder->_current.load(std::memory_order_acquire);
            if (p == _mine) {
                return false;
            }
            _mine = p;
            _slot->acked.store(p->seq, std::memory_order_release);
            return true;
        }

        /// The table adopted at the last refresh(); empty before the first one.
        const table& current() const noexcept { return _mine ? _mine->view : _empty; }

    private:
        friend class holder;
        reader(holder* h, slot* s) noexcept : _holder(h), _slot(s) {}

        holder* _holder;
        slot* _slot;
        const snapshot* _mine = nullptr;
        table _empty;
    };

    /// `max_readers`: how many readers (shards, plus tests) may be registered.
    explicit holder(uint32_t max_readers);
    /// Precondition: no reader is used any more (shards stopped).
    ~holder();
    holder(const holder&) = delete;
    holder& operator=(const holder&) = delete;

    /// Registers a reader; it starts on the current table at its first
    /// refresh(). Control thread. Throws std::length_error when all slots are taken.
    reader add_reader();

    /// Makes `view` (a table open()ed over `bytes`) the current table. Readers
    /// switch at their next refresh(). Control thread only. Calls collect().
    void publish(blob&& bytes, const table& view);

    /// Releases (unmaps) every table that all registered readers have moved
    /// past. Returns how many tables are still held, the current one included.
    /// Control thread only; call it periodically (e.g. each poll timeout).
    size_t collect() noexcept;

    /// The current table (control thread view), empty before the first publish.
    const table& latest() const noexcept;
    /// Tables held: the current one plus those some reader may still use. Control thread.
    size_t retained() const noexcept { return _snapshots.size(); }

private:
    struct snapshot {
        blob bytes;
        table view;
        uint64_t seq = 0;
    };

    std::atomic<const snapshot*> _current{nullptr};
    std::unique_ptr<slot[]> _slots;
    uint32_t _max_readers;
    uint64_t _next_seq = 1;
    std::vector<std::unique_ptr<snapshot>> _snapshots; ///< oldest first; back() is current
    table _empty;
};

} // namespace zt::table
