// Every single-byte corruption of a valid table, even with the checksum
// recomputed to match, is refused by open() wherever the byte is structural
// (offsets, lengths, counts, indices, hash slots, names, padding); where it is
// semantically free (an address byte, a port, a display string, a timeout) it
// may be accepted, and then every lookup still stays in bounds (run under ASan).
#include "common/table/reader.hh"
#include "tests/unit/common/table/test_tables.hh"

#include <doctest/doctest.h>

#include <cstring>
#include <string>

using namespace zt::table;
using namespace zt::table::test;
namespace f = zt::table::format;

namespace {

enum class byte_kind : uint8_t {
    structural, ///< open() must refuse any change
    free,       ///< a value the reader need not doubt: may be accepted
    checksum,   ///< the checksum itself (recomputed, so unchanged)
};

template <typename T>
T load(const std::vector<std::byte>& blob, size_t off) {
    T v;
    std::memcpy(&v, blob.data() + off, sizeof v);
    return v;
}

/// Which bytes of a valid blob are free, walking it with the format structs.
std::vector<byte_kind> classify(const std::vector<std::byte>& blob) {
    std::vector<byte_kind> k(blob.size(), byte_kind::structural);
    auto mark = [&](size_t off, size_t len, byte_kind v) {
        REQUIRE(off + len <= blob.size());
        for (size_t i = off; i < off + len; ++i) {
            k[i] = v;
        }
    };
    auto h = load<f::header>(blob, 0);
    mark(offsetof(f::header, checksum), 8, byte_kind::checksum);
    mark(offsetof(f::header, generation), 8, byte_kind::free);
    mark(offsetof(f::header, minor), 2, byte_kind::free); // a newer minor with nothing appended is valid
    const size_t strings = h.sections[f::sec_strings].offset;
    auto text = [&](const f::str& s) { mark(strings + s.offset, s.length, byte_kind::free); };
    auto elements = [&](f::section_id id, size_t size, auto fn) {
        for (uint32_t i = 0; i < h.sections[id].count; ++i) {
            fn(h.sections[id].offset + i * size);
        }
    };
    // Endpoint CNs, zone and owner names are hashed into the indexes: structural.
    elements(f::sec_endpoints, sizeof(f::endpoint), [&](size_t off) {
        auto e = load<f::endpoint>(blob, off);
        text(e.name);
        text(e.serial);
        mark(off + offsetof(f::endpoint, not_after), 8, byte_kind::free);
        mark(off + offsetof(f::endpoint, kind), 1, byte_kind::free);
        mark(off + offsetof(f::endpoint, revoked), 1, byte_kind::free);
    });
    elements(f::sec_services, sizeof(f::service), [&](size_t off) {
        auto s = load<f::service>(blob, off);
        text(s.cn); // not hashed: zones refer to it by index, checked by reference
        text(s.name);
        mark(off + offsetof(f::service, connect_timeout_ms), 4, byte_kind::free);
        mark(off + offsetof(f::service, flags), 4, byte_kind::free);
    });
    elements(f::sec_backends, sizeof(f::backend), [&](size_t off) {
        auto b = load<f::backend>(blob, off);
        text(b.host);
        mark(off + offsetof(f::backend, port), 2, byte_kind::free);
        mark(off + offsetof(f::backend, family), 1, byte_kind::free); // a value: 4 <-> 6 is valid
        mark(off + offsetof(f::backend, addr), b.family == f::family_ipv4 ? 4 : 16, byte_kind::free);
    });
    elements(f::sec_records, sizeof(f::record), [&](size_t off) {
        auto r = load<f::record>(blob, off);
        mark(off + offsetof(f::record, addr), r.type == f::type_a ? 4 : 16, byte_kind::free);
        mark(off + offsetof(f::record, type), 2, byte_kind::free); // a value: A <-> AAAA is valid
    });
    return k;
}

std::vector<std::byte> mutate(const std::vector<std::byte>& blob, size_t at, uint8_t x, bool fix_checksum) {
    auto b = blob;
    b[at] ^= std::byte{x};
    if (fix_checksum) {
        uint64_t sum = f::checksum(b);
        std::memcpy(b.data() + offsetof(f::header, checksum), &sum, sizeof sum);
    }
    return b;
}

} // namespace

TEST_CASE("every structural single-byte corruption is refused, checksum recomputed or not") {
    auto blob = compile_ok(small_config(), 9);
    REQUIRE(open(blob).ok());
    MESSAGE("blob of ", blob.size(), " bytes");
    auto kinds = classify(blob);
    size_t structural = 0, free_accepted = 0, free_refused = 0;
    for (size_t at = 0; at < blob.size(); ++at) {
        for (uint8_t x : {uint8_t(0x01), uint8_t(0x20), uint8_t(0x80), uint8_t(0xff)}) {
            // Without a matching checksum nothing passes.
            CHECK_MESSAGE(!open(mutate(blob, at, x, false)).ok(), "byte ", at, " ^ ", int(x), " (checksum kept)");
            if (kinds[at] == byte_kind::checksum) {
                continue;
            }
            auto b = mutate(blob, at, x, true);
            auto r = open(b);
            if (kinds[at] == byte_kind::structural) {
                ++structural;
                CHECK_MESSAGE(!r.ok(), "structural byte ", at, " ^ ", int(x), " was accepted");
            } else if (r.ok()) {
                ++free_accepted;
            } else {
                ++free_refused;
            }
            if (r.ok()) {
                exercise(r.view); // must stay in bounds (ASan)
            }
        }
    }
    MESSAGE(structural, " structural mutations refused; free mutations: ", free_accepted, " accepted, ", free_refused,
            " refused");
    CHECK(free_accepted > 0);
}

TEST_CASE("structural bytes refuse every XOR value, not just a few") {
    auto blob = compile_ok(small_config(), 9);
    auto kinds = classify(blob);
    size_t accepted = 0;
    for (size_t at = 0; at < blob.size(); ++at) {
        if (kinds[at] != byte_kind::structural) {
            continue;
        }
        for (int x = 1; x < 256; ++x) {
            auto b = mutate(blob, at, uint8_t(x), true);
            auto r = open(b);
            if (r.ok()) {
                ++accepted;
                MESSAGE("byte ", at, " ^ ", x, " accepted");
                exercise(r.view);
            }
        }
    }
    CHECK(accepted == 0);
}

TEST_CASE("the sample table, larger, refuses every structural corruption too") {
    auto blob = compile_ok(sample_config(), 10);
    auto kinds = classify(blob);
    for (size_t at = 0; at < blob.size(); ++at) {
        if (kinds[at] == byte_kind::checksum) {
            continue;
        }
        for (uint8_t x : {uint8_t(0x01), uint8_t(0x80)}) {
            auto b = mutate(blob, at, x, true);
            auto r = open(b);
            if (kinds[at] == byte_kind::structural) {
                CHECK_MESSAGE(!r.ok(), "structural byte ", at, " ^ ", int(x), " was accepted");
            }
            if (r.ok()) {
                exercise(r.view);
            }
        }
    }
}

TEST_CASE("truncations and random garbage never crash") {
    auto blob = compile_ok(sample_config(), 11);
    for (size_t n = 0; n < blob.size(); ++n) {
        std::vector<std::byte> b(blob.begin(), blob.begin() + ptrdiff_t(n));
        CHECK_FALSE(open(b).ok());
    }
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 2000; ++i) {
        auto b = blob;
        for (int k = 0; k < 4; ++k) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            b[s % b.size()] = std::byte(s >> 56);
        }
        uint64_t sum = f::checksum(b);
        std::memcpy(b.data() + offsetof(f::header, checksum), &sum, sizeof sum);
        auto r = open(b);
        if (r.ok()) {
            exercise(r.view);
        }
    }
}
