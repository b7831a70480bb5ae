// The endpoint's catalog, in standard DNS: PTR `_catalog._ztdns.<server name>`
// answers one PTR per zone the asking CN may see, SRV `_ztdns._tcp.<zone>` the
// service's port (never its address). Built by hand: the codec's builder knows
// A/AAAA/SOA only, and these two answers are rare.
#include "dataplane/shard.hh"

#include <cstring>

namespace zt::dataplane {
namespace {

constexpr std::string_view catalog_prefix = "_catalog._ztdns.";
constexpr std::string_view srv_prefix = "_ztdns._tcp.";

/// Appends bytes while they fit; remembers when one did not.
struct writer {
    std::span<std::byte> out;
    size_t n = 0;
    bool full = false;
    void u8(uint8_t v) noexcept {
        if (n + 1 > out.size()) {
            full = true;
            return;
        }
        out[n++] = std::byte(v);
    }
    void u16(uint16_t v) noexcept {
        u8(uint8_t(v >> 8));
        u8(uint8_t(v));
    }
    void u32(uint32_t v) noexcept {
        u16(uint16_t(v >> 16));
        u16(uint16_t(v));
    }
    void bytes(std::span<const std::byte> b) noexcept {
        if (n + b.size() > out.size()) {
            full = true;
            return;
        }
        std::memcpy(out.data() + n, b.data(), b.size());
        n += b.size();
    }
    /// A dotted name in wire form (uncompressed).
    void name(std::string_view dotted) noexcept {
        while (!dotted.empty()) {
            size_t dot = dotted.find('.');
            std::string_view label = dotted.substr(0, dot);
            u8(uint8_t(label.size()));
            bytes(std::as_bytes(std::span(label.data(), label.size())));
            dotted = dot == std::string_view::npos ? std::string_view{} : dotted.substr(dot + 1);
        }
        u8(0);
    }
};

} // namespace

size_t shard::answer_catalog(const conn& c, const dns::query& q, std::span<std::byte> out) noexcept {
    const table::table& t = _reader.current();
    bool catalog = q.qtype == dns::rr_type::ptr && q.qname.size() == catalog_prefix.size() + _o.server_name.size() &&
                   q.qname.starts_with(catalog_prefix) && q.qname.ends_with(_o.server_name);
    bool srv = q.qtype == dns::rr_type::srv && q.qname.starts_with(srv_prefix);
    if ((!catalog && !srv) || !q.qname_exact || c.endpoint == table::none) {
        return 0;
    }
    uint32_t srv_zone = table::none;
    uint16_t srv_port = 0;
    if (srv) {
        std::string_view zone = q.qname.substr(srv_prefix.size());
        table::name_match m = t.find(zone);
        if (!m.found() || t.zone_name(m.zone) != zone || !t.allows(m.zone, c.endpoint)) {
            return 0;
        }
        auto sv = t.service(t.zone_service(m.zone));
        if (sv.backends.empty()) {
            return 0;
        }
        srv_zone = m.zone;
        srv_port = sv.backends[0].port;
    }
    writer w{out};
    w.u16(q.hdr.id);
    w.u16(uint16_t(0x8000 | 0x0400 | (q.hdr.flags & 0x0100) | 0x0080)); // QR AA RD(copied) RA, NOERROR
    w.u16(1);
    w.u16(0); // answers, patched below
    w.u16(0);
    w.u16(0);
    w.bytes(q.question);
    uint16_t answers = 0;
    auto owner = [&] { w.u16(0xc000 | dns::header_size); }; // the question's name
    if (srv) {
        std::string_view zone = t.zone_name(srv_zone);
        owner();
        w.u16(dns::rr_type::srv);
        w.u16(dns::class_in);
        w.u32(_o.answer_ttl);
        w.u16(uint16_t(6 + zone.size() + 2));
        w.u16(0); // priority
        w.u16(0); // weight
        w.u16(srv_port);
        w.name(zone);
        ++answers;
    } else {
        for (uint32_t z = 0; z < t.zone_count() && !w.full; ++z) {
            if (!t.allows(z, c.endpoint)) {
                continue;
            }
            std::string_view zone = t.zone_name(z);
            size_t mark = w.n;
            owner();
            w.u16(dns::rr_type::ptr);
            w.u16(dns::class_in);
            w.u32(_o.answer_ttl);
            w.u16(uint16_t(zone.size() + 2));
            w.name(zone);
            if (w.full) {
                w.n = mark; // a DoT answer is at most 64 KiB: list what fits, say it was cut
                out[2] |= std::byte(0x02); // TC
                break;
            }
            ++answers;
        }
    }
    if (w.full && answers == 0) {
        return 0;
    }
    out[6] = std::byte(answers >> 8);
    out[7] = std::byte(answers);
    return w.n;
}

} // namespace zt::dataplane
