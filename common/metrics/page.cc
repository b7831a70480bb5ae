// The counters page: layout, seals, validation and Prometheus rendering.
#include "common/metrics/page.hh"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include <fmt/format.h>

namespace zt::metrics {

namespace {

constexpr size_t round_up(size_t n, size_t to) {
    return (n + to - 1) / to * to;
}

std::string errno_text(const char* what) {
    return fmt::format("{}: {}", what, std::strerror(errno));
}

} // namespace

std::unique_ptr<page> page::create(const std::vector<slot_desc>& slots, size_t block_bytes, uint32_t blocks,
                                   std::string& err) {
    if (slots.empty() || slots.size() > max_slots || block_bytes < slots.size() * 8 || blocks == 0 ||
        blocks > max_blocks) {
        err = "metrics page: bad layout";
        return nullptr;
    }
    std::string names;
    for (const auto& s : slots) {
        names += static_cast<char>(s.k);
        names += s.name;
        names += '\0';
    }
    header h{};
    std::memcpy(h.magic, magic, sizeof h.magic);
    h.version = version;
    h.blocks = blocks;
    h.slots = static_cast<uint32_t>(slots.size());
    h.names_offset = sizeof(header);
    h.names_size = static_cast<uint32_t>(names.size());
    h.data_offset = static_cast<uint32_t>(round_up(h.names_offset + names.size(), 64));
    h.block_stride = static_cast<uint32_t>(round_up(block_bytes, 64));
    size_t size = round_up(h.data_offset + size_t(h.block_stride) * blocks, 4096);

    std::unique_ptr<page> p(new page());
    p->_fd = ::memfd_create("ztdns-metrics", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (p->_fd < 0) {
        err = errno_text("metrics page: memfd_create");
        return nullptr;
    }
    if (::ftruncate(p->_fd, static_cast<off_t>(size)) != 0) {
        err = errno_text("metrics page: ftruncate");
        return nullptr;
    }
    if (::fcntl(p->_fd, F_ADD_SEALS, required_seals) != 0) {
        err = errno_text("metrics page: sealing");
        return nullptr;
    }
    void* m = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, p->_fd, 0);
    if (m == MAP_FAILED) {
        err = errno_text("metrics page: mmap");
        return nullptr;
    }
    p->_base = static_cast<std::byte*>(m);
    p->_size = size;
    std::memcpy(p->_base, &h, sizeof h);
    std::memcpy(p->_base + h.names_offset, names.data(), names.size());
    p->_h = reinterpret_cast<const header*>(p->_base);
    return p;
}

page::~page() {
    if (_base) {
        ::munmap(_base, _size);
    }
    if (_fd >= 0) {
        ::close(_fd);
    }
}

void* page::block(uint32_t i) const noexcept {
    return _base + _h->data_offset + size_t(_h->block_stride) * i;
}

view::~view() {
    reset();
}

view::view(view&& o) noexcept : _base(o._base), _size(o._size), _h(o._h), _slots(std::move(o._slots)) {
    o._base = nullptr;
}

view& view::operator=(view&& o) noexcept {
    if (this != &o) {
        reset();
        _base = o._base;
        _size = o._size;
        _h = o._h;
        _slots = std::move(o._slots);
        o._base = nullptr;
    }
    return *this;
}

void view::reset() noexcept {
    if (_base) {
        ::munmap(const_cast<std::byte*>(_base), _size);
    }
    _base = nullptr;
    _size = 0;
    _slots.clear();
}

std::string view::open(int fd) {
    reset();
    int seals = ::fcntl(fd, F_GET_SEALS);
    if (seals < 0 || (seals & required_seals) != required_seals) {
        return "metrics page is not sealed against resizing";
    }
    struct stat st{};
    if (::fstat(fd, &st) != 0) {
        return errno_text("metrics page: fstat");
    }
    auto size = static_cast<size_t>(st.st_size);
    if (size < sizeof(header) || size > (64u << 20)) {
        return fmt::format("metrics page has an impossible size ({} bytes)", size);
    }
    void* m = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        return errno_text("metrics page: mmap");
    }
    _base = static_cast<const std::byte*>(m);
    _size = size;
    // The header is copied before it is checked: the writer could change it.
    header& h = _h;
    std::memcpy(&h, _base, sizeof h);
    auto fail = [&](std::string why) {
        reset();
        return "metrics page: " + why;
    };
    if (std::memcmp(h.magic, magic, sizeof h.magic) != 0 || h.version != version) {
        return fail("unknown format");
    }
    if (h.slots == 0 || h.slots > max_slots || h.blocks == 0 || h.blocks > max_blocks ||
        h.block_stride < size_t(h.slots) * 8 || h.block_stride % 64 != 0 || h.data_offset % 64 != 0 ||
        h.names_offset < sizeof h || size_t(h.names_offset) + h.names_size > h.data_offset ||
        size_t(h.data_offset) + size_t(h.block_stride) * h.blocks > size) {
        return fail("inconsistent layout");
    }
    std::string names(reinterpret_cast<const char*>(_base) + h.names_offset, h.names_size);
    size_t at = 0;
    for (uint32_t s = 0; s < h.slots; ++s) {
        size_t end = names.find('\0', at);
        if (end == std::string::npos || end - at < 2) {
            return fail("slot names are cut short");
        }
        char k = names[at];
        if (k != 'c' && k != 'g' && k != 'h') {
            return fail(fmt::format("slot {} has an unknown kind", s));
        }
        std::string name = names.substr(at + 1, end - at - 1);
        for (char ch : name) {
            if (!(ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))) {
                return fail(fmt::format("slot {} has a name that is not [a-z0-9_]", s));
            }
        }
        _slots.push_back({static_cast<kind>(k), std::move(name)});
        at = end + 1;
    }
    return "";
}

uint64_t view::value(uint32_t b, uint32_t s) const noexcept {
    const auto* p = reinterpret_cast<const uint64_t*>(_base + _h.data_offset + size_t(_h.block_stride) * b) + s;
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

uint64_t view::total(std::string_view name) const noexcept {
    for (uint32_t s = 0; s < _slots.size(); ++s) {
        if (_slots[s].name == name) {
            uint64_t sum = 0;
            for (uint32_t b = 0; b < blocks(); ++b) {
                sum += value(b, s);
            }
            return sum;
        }
    }
    return 0;
}

std::string render_prometheus(std::span<const view* const> views, std::span<const int> pids) {
    std::string out;
    // One HELP/TYPE block per metric name, then the samples of every view and shard.
    const view* first = nullptr;
    for (const view* v : views) {
        if (v && v->valid()) {
            first = v;
            break;
        }
    }
    if (!first) {
        return out;
    }
    const auto& slots = first->slots();
    for (size_t s = 0; s < slots.size();) {
        const auto& d = slots[s];
        size_t n = 1;
        if (d.k == kind::histogram) {
            while (s + n < slots.size() && slots[s + n].k == kind::histogram && slots[s + n].name == d.name) {
                ++n;
            }
        }
        switch (d.k) {
        case kind::counter:
            fmt::format_to(std::back_inserter(out), "# TYPE ztdns_{}_total counter\n", d.name);
            break;
        case kind::gauge:
            fmt::format_to(std::back_inserter(out), "# TYPE ztdns_{} gauge\n", d.name);
            break;
        case kind::histogram:
            fmt::format_to(std::back_inserter(out), "# TYPE ztdns_{}_seconds histogram\n", d.name);
            break;
        }
        for (size_t vi = 0; vi < views.size(); ++vi) {
            const view* v = views[vi];
            // A view of another build whose slots differ from the first's is
            // rendered only where its names agree.
            if (!v || !v->valid() || v->slots().size() <= s + n - 1 || v->slots()[s].name != d.name) {
                continue;
            }
            for (uint32_t b = 0; b < v->blocks(); ++b) {
                int pid = vi < pids.size() ? pids[vi] : 0;
                if (d.k == kind::counter) {
                    fmt::format_to(std::back_inserter(out), "ztdns_{}_total{{pid=\"{}\",shard=\"{}\"}} {}\n", d.name,
                                   pid, b, v->value(b, uint32_t(s)));
                } else if (d.k == kind::gauge) {
                    fmt::format_to(std::back_inserter(out), "ztdns_{}{{pid=\"{}\",shard=\"{}\"}} {}\n", d.name, pid,
                                   b, v->value(b, uint32_t(s)));
                } else {
                    uint64_t cumulative = 0;
                    for (size_t i = 0; i < n; ++i) {
                        cumulative += v->value(b, uint32_t(s + i));
                        // Bucket i holds values below 2^(i+1) microseconds; the last one everything.
                        std::string le = i + 1 == n ? "+Inf" : fmt::format("{:g}", double(uint64_t(2) << i) / 1e6);
                        fmt::format_to(std::back_inserter(out),
                                       "ztdns_{}_seconds_bucket{{pid=\"{}\",shard=\"{}\",le=\"{}\"}} {}\n", d.name,
                                       pid, b, le, cumulative);
                    }
                    fmt::format_to(std::back_inserter(out), "ztdns_{}_seconds_count{{pid=\"{}\",shard=\"{}\"}} {}\n",
                                   d.name, pid, b, cumulative);
                }
            }
        }
        s += n;
    }
    return out;
}

} // namespace zt::metrics
