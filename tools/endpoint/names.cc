// The endpoint's DNS helpers (see names.hh).
#include "tools/endpoint/names.hh"

#include <algorithm>
#include <array>
#include <cstring>

namespace zt::endpoint {
namespace {

uint16_t u16_at(std::span<const std::byte> m, size_t o) noexcept {
    return static_cast<uint16_t>(std::to_integer<unsigned>(m[o]) << 8 | std::to_integer<unsigned>(m[o + 1]));
}

uint32_t u32_at(std::span<const std::byte> m, size_t o) noexcept {
    return uint32_t(u16_at(m, o)) << 16 | u16_at(m, o + 2);
}

std::optional<std::string> name_at(std::span<const std::byte> m, size_t offset, size_t& end) {
    std::array<char, dns::name_buffer_size> buf{};
    auto d = dns::decode_name(m, offset, std::span<char, dns::name_buffer_size>(buf));
    if (d.error != dns::name_error::none || !d.exact) {
        return std::nullopt;
    }
    end = d.end;
    return std::string(d.text);
}

} // namespace

std::string catalog_name(std::string_view server_name) {
    return "_catalog._ztdns." + std::string(server_name);
}

std::string srv_name(std::string_view zone) {
    return "_ztdns._tcp." + std::string(zone);
}

size_t build_query(std::span<std::byte> out, uint16_t id, std::string_view name, uint16_t qtype, bool edns) {
    std::array<std::byte, dns::max_name_wire_size> wire{};
    size_t w = 0;
    if (!name.empty() && name.back() == '.') {
        name.remove_suffix(1);
    }
    while (!name.empty()) {
        size_t dot = name.find('.');
        std::string_view label = name.substr(0, dot);
        if (label.empty() || label.size() > dns::max_label_size || w + 1 + label.size() + 1 > wire.size()) {
            return 0;
        }
        wire[w++] = std::byte(label.size());
        std::memcpy(wire.data() + w, label.data(), label.size());
        w += label.size();
        name = dot == std::string_view::npos ? std::string_view{} : name.substr(dot + 1);
    }
    wire[w++] = std::byte{0};
    const size_t opt_size = edns ? 11 : 0;
    const size_t total = dns::header_size + w + 4 + opt_size;
    if (out.size() < total) {
        return 0;
    }
    std::byte* p = out.data();
    auto put16 = [&](uint16_t v) {
        *p++ = std::byte(v >> 8);
        *p++ = std::byte(v & 0xff);
    };
    put16(id);
    put16(0x0100); // RD
    put16(1);
    put16(0);
    put16(0);
    put16(edns ? 1 : 0);
    std::memcpy(p, wire.data(), w);
    p += w;
    put16(qtype);
    put16(dns::class_in);
    if (edns) {
        *p++ = std::byte{0}; // root owner
        put16(dns::rr_type::opt);
        put16(1232);
        put16(0); // extended rcode, version
        put16(0); // flags
        put16(0); // no options
    }
    return total;
}

std::optional<std::vector<record>> read_records(std::span<const std::byte> msg) {
    auto h = dns::read_header(msg);
    if (!h) {
        return std::nullopt;
    }
    size_t off = dns::header_size;
    for (uint16_t i = 0; i < h->qdcount; ++i) {
        size_t end = 0;
        if (!name_at(msg, off, end) || end + 4 > msg.size()) {
            return std::nullopt;
        }
        off = end + 4;
    }
    std::vector<record> out;
    const uint16_t counts[3] = {h->ancount, h->nscount, h->arcount};
    for (int section = 0; section < 3; ++section) {
        for (uint16_t i = 0; i < counts[section]; ++i) {
            size_t end = 0;
            auto owner = name_at(msg, off, end);
            if (!owner || end + 10 > msg.size()) {
                return std::nullopt;
            }
            record r;
            r.section = section;
            r.owner = std::move(*owner);
            r.type = u16_at(msg, end);
            r.cls = u16_at(msg, end + 2);
            r.ttl = u32_at(msg, end + 4);
            r.rdata_size = u16_at(msg, end + 8);
            r.rdata_offset = end + 10;
            if (r.rdata_offset + r.rdata_size > msg.size()) {
                return std::nullopt;
            }
            off = r.rdata_offset + r.rdata_size;
            out.push_back(std::move(r));
        }
    }
    return out;
}

catalog_answer parse_catalog(std::span<const std::byte> msg, std::string_view name) {
    catalog_answer a;
    auto h = dns::read_header(msg);
    if (!h) {
        return a;
    }
    if (h->rcode_low() == uint8_t(dns::rcode::nxdomain)) {
        a.result = catalog_answer::kind::none;
        return a;
    }
    if (h->rcode_low() != uint8_t(dns::rcode::noerror)) {
        return a;
    }
    auto records = read_records(msg);
    if (!records) {
        return a;
    }
    for (const auto& r : *records) {
        if (r.section != 0 || r.type != type_ptr || r.cls != dns::class_in || r.owner != name) {
            continue;
        }
        size_t end = 0;
        auto zone = name_at(msg, r.rdata_offset, end);
        // The PTR's name must fill its rdata exactly, and be a name we can serve.
        if (!zone || end != r.rdata_offset + r.rdata_size || !valid_zone_name(*zone)) {
            continue;
        }
        a.zones.push_back(std::move(*zone));
    }
    std::sort(a.zones.begin(), a.zones.end());
    a.zones.erase(std::unique(a.zones.begin(), a.zones.end()), a.zones.end());
    a.truncated = h->tc();
    a.result = catalog_answer::kind::zones;
    return a;
}

std::vector<uint16_t> parse_srv_ports(std::span<const std::byte> msg, std::string_view name) {
    std::vector<uint16_t> ports;
    auto h = dns::read_header(msg);
    if (!h || h->rcode_low() != uint8_t(dns::rcode::noerror)) {
        return ports;
    }
    auto records = read_records(msg);
    if (!records) {
        return ports;
    }
    for (const auto& r : *records) {
        if (r.section != 0 || r.type != type_srv || r.cls != dns::class_in || r.owner != name || r.rdata_size < 7) {
            continue;
        }
        uint16_t port = u16_at(msg, r.rdata_offset + 4);
        if (port != 0 && std::find(ports.begin(), ports.end(), port) == ports.end()) {
            ports.push_back(port);
        }
    }
    return ports;
}

bool under_zone(std::string_view name, std::string_view zone) noexcept {
    if (zone.empty()) {
        return false;
    }
    if (name.size() == zone.size()) {
        return name == zone;
    }
    return name.size() > zone.size() && name.ends_with(zone) && name[name.size() - zone.size() - 1] == '.';
}

bool valid_zone_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > 253) {
        return false;
    }
    size_t label = 0;
    for (char c : name) {
        if (c == '.') {
            if (label == 0) {
                return false;
            }
            label = 0;
            continue;
        }
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (!ok || ++label > dns::max_label_size) {
            return false;
        }
    }
    return label > 0;
}

size_t build_truncated(const dns::query& q, std::span<const std::byte> resp, std::span<std::byte> out) noexcept {
    const size_t total = dns::header_size + q.question.size();
    if (resp.size() < dns::header_size || out.size() < total) {
        return 0;
    }
    std::memcpy(out.data(), resp.data(), 4); // id and flags
    out[2] |= std::byte{0x02};               // TC
    const std::byte counts[8] = {std::byte{0}, std::byte{1}};
    std::memcpy(out.data() + 4, counts, sizeof counts);
    std::memcpy(out.data() + dns::header_size, q.question.data(), q.question.size());
    return total;
}

tunnel_header parse_tunnel_header(std::span<const std::byte> bytes) {
    tunnel_header h;
    const size_t limit = std::min(bytes.size(), max_tunnel_header);
    size_t nl = 0;
    while (nl < limit && bytes[nl] != std::byte{'\n'}) {
        ++nl;
    }
    if (nl == limit) {
        h.result = bytes.size() >= max_tunnel_header ? tunnel_header::status::bad : tunnel_header::status::need_more;
        return h;
    }
    std::string_view line(reinterpret_cast<const char*>(bytes.data()), nl);
    if (!line.empty() && line.back() == '\r') {
        line.remove_suffix(1);
    }
    constexpr std::string_view magic = "ZTDNS-TUNNEL ";
    h.result = tunnel_header::status::bad;
    if (!line.starts_with(magic)) {
        return h;
    }
    line.remove_prefix(magic.size());
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos) {
        return h;
    }
    std::string_view name = line.substr(0, sp), cn = line.substr(sp + 1);
    if (!valid_zone_name(name) || cn.empty() || cn.size() > 64 || cn.find(' ') != std::string_view::npos) {
        return h;
    }
    h.name.assign(name);
    std::transform(h.name.begin(), h.name.end(), h.name.begin(),
                   [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; });
    h.client_cn.assign(cn);
    h.consumed = nl + 1;
    h.result = tunnel_header::status::ok;
    return h;
}

parked_line parse_parked_line(std::span<const std::byte> bytes) {
    parked_line p;
    constexpr std::string_view magic = "ZTDNS-PARKED ";
    std::string_view have(reinterpret_cast<const char*>(bytes.data()), std::min(bytes.size(), size_t(64)));
    if (have.size() < magic.size()) {
        p.result = magic.starts_with(have) ? parked_line::status::need_more : parked_line::status::other;
        return p;
    }
    if (!have.starts_with(magic)) {
        p.result = parked_line::status::other;
        return p;
    }
    size_t nl = have.find('\n');
    if (nl == std::string_view::npos) {
        p.result = have.size() >= 64 ? parked_line::status::bad : parked_line::status::need_more;
        return p;
    }
    std::string_view rest = have.substr(magic.size(), nl - magic.size());
    if (!rest.empty() && rest.back() == '\r') {
        rest.remove_suffix(1);
    }
    auto number = [](std::string_view t, unsigned& out) {
        if (t.empty() || t.size() > 5) {
            return false;
        }
        out = 0;
        for (char c : t) {
            if (c < '0' || c > '9') {
                return false;
            }
            out = out * 10 + unsigned(c - '0');
        }
        return true;
    };
    size_t sp = rest.find(' ');
    p.result = parked_line::status::bad;
    if (sp == std::string_view::npos || !number(rest.substr(0, sp), p.shard) ||
        !number(rest.substr(sp + 1), p.shards) || p.shards == 0 || p.shard >= p.shards) {
        return p;
    }
    p.consumed = nl + 1;
    p.result = parked_line::status::ok;
    return p;
}

} // namespace zt::endpoint
