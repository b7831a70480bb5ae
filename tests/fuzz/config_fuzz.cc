// Fuzzes the config parsers: the first byte picks the file kind, the rest is
// the document. Whatever the input, parsing returns values or errors, and
// what parses writes back to JSON that parses again to the same model.
#include "common/config/parse.hh"
#include "common/config/write.hh"

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) {
        return 0;
    }
    std::string_view doc(reinterpret_cast<const char*>(data + 1), size - 1);
    using namespace zt::config;
    switch (data[0] % 4) {
    case 0: {
        auto p = parse_zones(doc);
        if (p.ok()) {
            auto again = parse_zones(zones_json(p.value));
            if (!again.ok() || zones_json(again.value) != zones_json(p.value)) {
                std::abort();
            }
            cross_check({appliance{}, p.value, {}, {}});
        }
        break;
    }
    case 1: {
        auto p = parse_routes(doc);
        if (p.ok()) {
            auto again = parse_routes(routes_json(p.value));
            if (!again.ok() || routes_json(again.value) != routes_json(p.value)) {
                std::abort();
            }
            cross_check({appliance{}, {}, p.value, {}});
        }
        break;
    }
    case 2: {
        auto p = parse_endpoints(doc);
        if (p.ok()) {
            auto again = parse_endpoints(endpoints_json(p.value));
            if (!again.ok()) {
                std::abort();
            }
        }
        break;
    }
    default: {
        auto p = parse_appliance(doc);
        if (p.ok() && !parse_appliance(appliance_json(p.value)).ok()) {
            std::abort();
        }
        break;
    }
    }
    return 0;
}
