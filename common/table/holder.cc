// The snapshot holder: publication, per-reader acknowledgement, release.
#include "common/table/holder.hh"

#include <sys/mman.h>

#include <cstring>
#include <new>
#include <stdexcept>

namespace zt::table {

namespace {
constexpr std::align_val_t heap_alignment{64};
}

blob blob::adopt_mapping(void* addr, size_t len) noexcept {
    blob b;
    b._addr = addr;
    b._len = len;
    b._mapped = true;
    return b;
}

blob blob::allocate(size_t len) {
    blob b;
    b._addr = ::operator new(len == 0 ? 1 : len, heap_alignment);
    b._len = len;
    return b;
}

blob blob::copy_of(std::span<const std::byte> bytes) {
    blob b = allocate(bytes.size());
    if (!bytes.empty()) {
        std::memcpy(b._addr, bytes.data(), bytes.size());
    }
    return b;
}

blob::blob(blob&& o) noexcept : _addr(o._addr), _len(o._len), _mapped(o._mapped) {
    o._addr = nullptr;
    o._len = 0;
    o._mapped = false;
}

blob& blob::operator=(blob&& o) noexcept {
    if (this != &o) {
        reset();
        _addr = o._addr;
        _len = o._len;
        _mapped = o._mapped;
        o._addr = nullptr;
        o._len = 0;
        o._mapped = false;
    }
    return *this;
}

blob::~blob() {
    reset();
}

std::span<std::byte> blob::writable() noexcept {
    if (_mapped) {
        return {};
    }
    return {static_cast<std::byte*>(_addr), _len};
}

void blob::reset() noexcept {
    if (_addr == nullptr) {
        return;
    }
    if (_mapped) {
        ::munmap(_addr, _len);
    } else {
        ::operator delete(_addr, heap_alignment);
    }
    _addr = nullptr;
    _len = 0;
    _mapped = false;
}

holder::reader::reader(reader&& o) noexcept : _holder(o._holder), _slot(o._slot), _mine(o._mine), _empty(o._empty) {
    o._slot = nullptr;
    o._mine = nullptr;
}

holder::reader::~reader() {
    if (_slot != nullptr) {
        _slot->active.store(false, std::memory_order_release);
    }
}

holder::holder(uint32_t max_readers) : _slots(new slot[max_readers]), _max_readers(max_readers) {}

holder::~holder() {
    _current.store(nullptr, std::memory_order_relaxed);
    _snapshots.clear();
}

holder::reader holder::add_reader() {
    for (uint32_t i = 0; i < _max_readers; ++i) {
        slot& s = _slots[i];
        if (!s.active.load(std::memory_order_acquire)) {
            const snapshot* cur = _current.load(std::memory_order_relaxed);
            // Until its first refresh() the reader pins the current table.
            s.acked.store(cur ? cur->seq : 0, std::memory_order_relaxed);
            s.active.store(true, std::memory_order_release);
            return reader(this, &s);
        }
    }
    throw std::length_error("table holder: every reader slot is taken");
}

void holder::publish(blob&& bytes, const table& view) {
    auto s = std::make_unique<snapshot>();
    s->bytes = std::move(bytes);
    s->view = view;
    s->seq = _next_seq++;
    _snapshots.push_back(std::move(s));
    _current.store(_snapshots.back().get(), std::memory_order_release);
    collect();
}

size_t holder::collect() noexcept {
    if (_snapshots.size() <= 1) {
        return _snapshots.size();
    }
    uint64_t oldest_in_use = _snapshots.back()->seq;
    for (uint32_t i = 0; i < _max_readers; ++i) {
        if (_slots[i].active.load(std::memory_order_acquire)) {
            // Acquire: the reader's last reads of the older table happen before this.
            oldest_in_use = std::min(oldest_in_use, _slots[i].acked.load(std::memory_order_acquire));
        }
    }
    size_t drop = 0;
    while (drop + 1 < _snapshots.size() && _snapshots[drop]->seq < oldest_in_use) {
        ++drop;
    }
    _snapshots.erase(_snapshots.begin(), _snapshots.begin() + ptrdiff_t(drop));
    return _snapshots.size();
}

const table& holder::latest() const noexcept {
    const snapshot* cur = _current.load(std::memory_order_relaxed);
    return cur ? cur->view : _empty;
}

} // namespace zt::table
