// Fuzz target for the route table reader: open() on the input as it is, and
// again with the checksum recomputed (else almost every mutation stops at the
// checksum and the structural checks are never reached); on success, every
// lookup of the table is exercised.
#include "common/table/format.hh"
#include "common/table/reader.hh"
#include "tests/unit/common/table/exercise.hh"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    namespace f = zt::table::format;
    // open() wants 8-byte aligned memory, as a mapping or a heap buffer is;
    // an exact-size copy also lets ASan see reads past the end.
    std::vector<std::byte> buf(size);
    if (size > 0) {
        std::memcpy(buf.data(), data, size);
    }
    auto r = zt::table::open(buf);
    if (r.ok()) {
        zt::table::test::exercise(r.view);
    }
    if (size >= sizeof(f::header)) {
        uint64_t sum = f::checksum(buf);
        std::memcpy(buf.data() + offsetof(f::header, checksum), &sum, sizeof sum);
        r = zt::table::open(buf);
        if (r.ok()) {
            zt::table::test::exercise(r.view);
        }
    }
    return 0;
}
