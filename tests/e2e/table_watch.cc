// A table subscriber for the end-to-end tests: connects to ztdns-control's
// table socket like the data plane does and prints one line per adopted table:
// "generation G zones Z allowed|denied" for the CN and name given, until killed.
#include "common/table/holder.hh"
#include "common/table/subscriber.hh"

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: zt-table-watch SOCKET CN NAME\n");
        return 2;
    }
    std::string cn = argv[2], name = argv[3];
    zt::table::holder holder(2);
    auto reader = holder.add_reader();
    zt::table::subscriber sub(holder, {argv[1]});
    uint64_t shown = 0;
    for (;;) {
        sub.run_once(200);
        reader.refresh();
        const auto& t = reader.current();
        if (t.generation() != shown) {
            shown = t.generation();
            auto m = t.find(name);
            uint32_t ep = t.find_endpoint(cn);
            bool allowed = m.found() && ep != zt::table::none && t.allows(m.zone, ep);
            std::printf("generation %llu zones %u %s\n", static_cast<unsigned long long>(shown), t.zone_count(),
                        allowed ? "allowed" : "denied");
            std::fflush(stdout);
        }
    }
}
