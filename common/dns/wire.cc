// DNS wire codec: see wire.hh. Every read is checked against the message size before it happens; nothing here
// allocates, throws or keeps state between calls.
#include "common/dns/wire.hh"

#include <algorithm>
#include <cstring>

namespace zt::dns {
namespace {

constexpr uint16_t flag_qr = 0x8000;
constexpr uint16_t flag_aa = 0x0400;
constexpr uint16_t flag_tc = 0x0200;
constexpr uint16_t flag_rd = 0x0100;
constexpr uint16_t flag_ra = 0x0080;
constexpr uint16_t flag_cd = 0x0010;
constexpr uint16_t opcode_mask = 0x7800;
constexpr uint16_t edns_do = 0x8000;
constexpr uint16_t pointer_to_question = 0xc000 | header_size; // answers are owned by the question name

// Smallest possible sizes: a question is a root name + type + class; a record adds ttl + rdlength.
constexpr size_t min_question_size = 5;
constexpr size_t rr_fixed_size = 10;
constexpr size_t min_rr_size = 1 + rr_fixed_size;
constexpr size_t opt_rr_size = 1 + rr_fixed_size;
constexpr size_t edns_option_header = 4;
constexpr uint32_t max_ttl = 0x7fffffff; // RFC 2181 §8: larger values mean 0
constexpr size_t max_labels = 127;       // a 255-byte name holds at most 127 one-byte labels

const uint8_t* bytes_of(std::span<const std::byte> s) noexcept {
    return reinterpret_cast<const uint8_t*>(s.data());
}
uint8_t* bytes_of(std::span<std::byte> s) noexcept {
    return reinterpret_cast<uint8_t*>(s.data());
}

uint16_t get16(const uint8_t* p) noexcept {
    return static_cast<uint16_t>((p[0] << 8) | p[1]);
}
uint32_t get32(const uint8_t* p) noexcept {
    return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}
void put16(uint8_t* p, uint16_t v) noexcept {
    p[0] = static_cast<uint8_t>(v >> 8);
    p[1] = static_cast<uint8_t>(v);
}
void put32(uint8_t* p, uint32_t v) noexcept {
    p[0] = static_cast<uint8_t>(v >> 24);
    p[1] = static_cast<uint8_t>(v >> 16);
    p[2] = static_cast<uint8_t>(v >> 8);
    p[3] = static_cast<uint8_t>(v);
}

// RFC 4343: only ASCII letters fold; other bytes are compared as they are.
uint8_t fold(uint8_t c) noexcept {
    return static_cast<unsigned>(c - 'A') < 26u ? static_cast<uint8_t>(c | 0x20) : c;
}

header header_at(const uint8_t* p) noexcept {
    return header{get16(p), get16(p + 2), get16(p + 4), get16(p + 6), get16(p + 8), get16(p + 10)};
}

uint32_t sane_ttl(uint32_t ttl) noexcept {
    return ttl > max_ttl ? 0 : ttl;
}

enum class name_status : uint8_t { ok, truncated, label_too_long, name_too_long, bad_pointer };

struct name_span {
    name_status status = name_status::ok;
    size_t end = 0;       // offset just after the name where it starts (after its first pointer, if any)
    size_t wire_size = 0; // uncompressed wire size
};

// Follows a possibly compressed name from `pos`, calling on_label(bytes, len) for each label in order.
// Loop protection: a pointer must point before the start of the name part that holds it (the name's start, or the
// previous pointer's target), so targets strictly decrease and the walk ends; also not into the header, and at most
// max_pointer_hops of them.
template <typename OnLabel>
name_span walk_name(const uint8_t* msg, size_t size, size_t pos, OnLabel&& on_label) noexcept {
    size_t part_start = pos;
    size_t end = 0;
    size_t wire = 1; // the root byte
    size_t hops = 0;
    for (;;) {
        if (pos >= size) {
            return {name_status::truncated};
        }
        const uint8_t len = msg[pos];
        if (len == 0) {
            return {name_status::ok, hops == 0 ? pos + 1 : end, wire};
        }
        if ((len & 0xc0) == 0xc0) {
            if (pos + 1 >= size) {
                return {name_status::truncated};
            }
            const size_t target = (size_t{len & 0x3fu} << 8) | msg[pos + 1];
            if (target < header_size || target >= part_start || ++hops > max_pointer_hops) {
                return {name_status::bad_pointer};
            }
            if (hops == 1) {
                end = pos + 2;
            }
            pos = part_start = target;
            continue;
        }
        if (len > max_label_size) {
            return {name_status::label_too_long};
        }
        wire += 1 + size_t{len};
        if (wire > max_name_wire_size) {
            return {name_status::name_too_long};
        }
        if (size - pos - 1 < len) {
            return {name_status::truncated};
        }
        on_label(msg + pos + 1, len);
        pos += 1 + size_t{len};
    }
}

// Finds the end of a name without following its pointer: enough to walk records, and safe whatever the pointer
// says (it is checked to point backwards and past the header, but not read).
name_span skip_name(const uint8_t* msg, size_t size, size_t pos) noexcept {
    const size_t start = pos;
    size_t wire = 1;
    for (;;) {
        if (pos >= size) {
            return {name_status::truncated};
        }
        const uint8_t len = msg[pos];
        if (len == 0) {
            return {name_status::ok, pos + 1, wire};
        }
        if ((len & 0xc0) == 0xc0) {
            if (pos + 1 >= size) {
                return {name_status::truncated};
            }
            const size_t target = (size_t{len & 0x3fu} << 8) | msg[pos + 1];
            if (target < header_size || target >= start) {
                return {name_status::bad_pointer};
            }
            return {name_status::ok, pos + 2, wire};
        }
        if (len > max_label_size) {
            return {name_status::label_too_long};
        }
        wire += 1 + size_t{len};
        if (wire > max_name_wire_size) {
            return {name_status::name_too_long};
        }
        pos += 1 + size_t{len};
    }
}

struct rr_view {
    name_status status = name_status::ok;
    size_t owner = 0; // offset of the owner name
    size_t fixed = 0; // offset of the type field
    uint16_t type = 0;
    uint32_t ttl = 0;
    size_t rdata = 0;
    size_t rdlen = 0;
    size_t end = 0;
};

rr_view read_rr(const uint8_t* msg, size_t size, size_t pos) noexcept {
    const name_span n = skip_name(msg, size, pos);
    if (n.status != name_status::ok) {
        return {n.status};
    }
    if (size - n.end < rr_fixed_size) {
        return {name_status::truncated};
    }
    const uint8_t* f = msg + n.end;
    const size_t rdlen = get16(f + 8);
    if (size - n.end - rr_fixed_size < rdlen) {
        return {name_status::truncated};
    }
    const size_t rdata = n.end + rr_fixed_size;
    return {name_status::ok, pos, n.end, get16(f), get32(f + 4), rdata, rdlen, rdata + rdlen};
}

/// The offset just after the question section, or 0 when a question is cut short.
size_t skip_questions(const uint8_t* msg, size_t size, const header& h) noexcept {
    size_t pos = header_size;
    for (size_t i = 0; i < h.qdcount; ++i) {
        const name_span n = skip_name(msg, size, pos);
        if (n.status != name_status::ok || size - n.end < 4) {
            return 0;
        }
        pos = n.end + 4;
    }
    return pos;
}

name_error to_name_error(name_status s) noexcept {
    switch (s) {
    case name_status::ok:
        return name_error::none;
    case name_status::truncated:
        return name_error::truncated;
    case name_status::label_too_long:
        return name_error::label_too_long;
    case name_status::name_too_long:
        return name_error::name_too_long;
    case name_status::bad_pointer:
        return name_error::bad_pointer;
    }
    return name_error::truncated;
}

query_error to_query_error(name_error e) noexcept {
    switch (e) {
    case name_error::none:
        return query_error::none;
    case name_error::truncated:
        return query_error::truncated;
    case name_error::label_too_long:
        return query_error::label_too_long;
    case name_error::name_too_long:
        return query_error::name_too_long;
    case name_error::bad_pointer:
        return query_error::bad_pointer;
    }
    return query_error::truncated;
}

query_error to_query_error(name_status s) noexcept {
    return to_query_error(to_name_error(s));
}

// Reads OPT's options: each is code, length, data, and together they fill RDATA exactly.
bool read_edns_options(const uint8_t* p, size_t len, edns& out) noexcept {
    size_t pos = 0;
    while (pos < len) {
        if (len - pos < edns_option_header) {
            return false;
        }
        const uint16_t code = get16(p + pos);
        const size_t opt_len = get16(p + pos + 2);
        pos += edns_option_header;
        if (len - pos < opt_len) {
            return false;
        }
        if (code == edns_option_padding) {
            out.padding = true;
        }
        pos += opt_len;
    }
    return true;
}

edns edns_from(const uint8_t* msg, const rr_view& rr) noexcept {
    edns e;
    e.present = true;
    e.udp_payload_size = get16(msg + rr.fixed + 2);
    e.extended_rcode = static_cast<uint8_t>(rr.ttl >> 24);
    e.version = static_cast<uint8_t>(rr.ttl >> 16);
    e.dnssec_ok = (rr.ttl & edns_do) != 0;
    return e;
}

// Bounded writer: a write that does not fit sets `failed` and writes nothing, so callers check once at the end.
struct writer {
    uint8_t* p;
    size_t cap;
    size_t pos = 0;
    bool failed = false;

    bool room(size_t n) noexcept {
        if (failed || cap - pos < n) {
            failed = true;
            return false;
        }
        return true;
    }
    void u8(uint8_t v) noexcept {
        if (room(1)) {
            p[pos++] = v;
        }
    }
    void u16(uint16_t v) noexcept {
        if (room(2)) {
            put16(p + pos, v);
            pos += 2;
        }
    }
    void u32(uint32_t v) noexcept {
        if (room(4)) {
            put32(p + pos, v);
            pos += 4;
        }
    }
    void copy(const void* src, size_t n) noexcept {
        if (room(n)) {
            std::memcpy(p + pos, src, n);
            pos += n;
        }
    }
};

// No default member initializers: the arrays below stay uninitialized until used (they are on the per-query path).
struct label_ref {
    uint8_t start;
    uint8_t len;
};

// A dotted name from the caller (zone, mname, rname), split and checked: labels 1..63 bytes, 255 wire bytes.
struct dotted_name {
    bool ok = false;
    size_t count = 0;
    std::array<label_ref, max_labels> labels;
};

dotted_name split_dotted(std::string_view name) noexcept {
    dotted_name d;
    if (!name.empty() && name.back() == '.') {
        name.remove_suffix(1);
    }
    if (name.empty()) {
        d.ok = true;
        return d;
    }
    if (name.size() > max_name_wire_size - 2) {
        return d;
    }
    size_t start = 0;
    while (start <= name.size()) {
        size_t dot = name.find('.', start);
        if (dot == std::string_view::npos) {
            dot = name.size();
        }
        const size_t len = dot - start;
        if (len == 0 || len > max_label_size || d.count == max_labels) {
            return d;
        }
        d.labels[d.count++] = label_ref{static_cast<uint8_t>(start), static_cast<uint8_t>(len)};
        start = dot + 1;
    }
    d.ok = true;
    return d;
}

// Label start offsets of the (uncompressed) question name, relative to the question.
struct question_labels {
    bool ok = false;
    size_t count = 0;
    std::array<uint8_t, max_labels> offsets;
};

question_labels labels_of_question(std::span<const std::byte> question) noexcept {
    question_labels q;
    const uint8_t* p = bytes_of(question);
    if (question.size() < min_question_size) {
        return q;
    }
    const size_t name_end = question.size() - 4;
    size_t pos = 0;
    while (pos < name_end) {
        const uint8_t len = p[pos];
        if (len == 0) {
            q.ok = pos + 1 == name_end;
            return q;
        }
        if (len > max_label_size || q.count == max_labels || pos > 255) {
            return q;
        }
        q.offsets[q.count++] = static_cast<uint8_t>(pos);
        pos += 1 + size_t{len};
    }
    return q;
}

bool label_equal(const uint8_t* a, const char* b, size_t len) noexcept {
    for (size_t i = 0; i < len; ++i) {
        if (fold(a[i]) != fold(static_cast<uint8_t>(b[i]))) {
            return false;
        }
    }
    return true;
}

// Writes `d`, replacing its longest label suffix shared with the question name by a pointer into the question
// (which sits at offset 12 of the response): "internal.corp" under "db.Internal.Corp" becomes one 2-byte pointer.
void write_name(writer& w, const dotted_name& d, std::string_view text, const uint8_t* qwire,
                const question_labels& ql) noexcept {
    size_t shared = 0;
    while (shared < d.count && shared < ql.count) {
        const label_ref& l = d.labels[d.count - 1 - shared];
        const uint8_t* q = qwire + ql.offsets[ql.count - 1 - shared];
        if (q[0] != l.len || !label_equal(q + 1, text.data() + l.start, l.len)) {
            break;
        }
        ++shared;
    }
    const size_t own = d.count - shared;
    for (size_t i = 0; i < own; ++i) {
        w.u8(d.labels[i].len);
        w.copy(text.data() + d.labels[i].start, d.labels[i].len);
    }
    if (shared > 0) {
        w.u16(static_cast<uint16_t>(0xc000 | (header_size + ql.offsets[ql.count - shared])));
    } else {
        w.u8(0);
    }
}

} // namespace

reply_action reply_for(query_error e) noexcept {
    switch (e) {
    case query_error::none:
        return reply_action::answer;
    case query_error::short_header:
    case query_error::is_response:
        return reply_action::drop;
    case query_error::not_implemented:
        return reply_action::notimp;
    case query_error::bad_edns_version:
        return reply_action::badvers;
    case query_error::message_too_long:
    case query_error::bad_qdcount:
    case query_error::counts_exceed_message:
    case query_error::truncated:
    case query_error::label_too_long:
    case query_error::name_too_long:
    case query_error::bad_pointer:
    case query_error::bad_opt:
        return reply_action::formerr;
    }
    return reply_action::formerr;
}

decoded_name decode_name(std::span<const std::byte> msg_span, size_t offset,
                         std::span<char, name_buffer_size> name_buf) noexcept {
    decoded_name d;
    const size_t size = std::min(msg_span.size(), max_message_size);
    char* text = name_buf.data();
    size_t text_len = 0;
    bool exact = true;
    const name_span n = walk_name(bytes_of(msg_span), size, offset, [&](const uint8_t* label, size_t len) noexcept {
        // walk_name checked the wire size first, so the text (wire size - 2) stays within 253 bytes.
        if (text_len != 0) {
            text[text_len++] = '.';
        }
        for (size_t i = 0; i < len; ++i) {
            const uint8_t c = label[i];
            if (c == '.') {
                exact = false;
            }
            text[text_len++] = static_cast<char>(fold(c));
        }
    });
    if (n.status != name_status::ok) {
        d.error = to_name_error(n.status);
        return d;
    }
    d.text = std::string_view(text, text_len);
    d.end = n.end;
    d.wire_size = static_cast<uint8_t>(n.wire_size);
    d.exact = exact;
    return d;
}

query parse_query(std::span<const std::byte> msg_span, std::span<char, name_buffer_size> name_buf) noexcept {
    query q;
    const size_t size = msg_span.size();
    if (size < header_size) {
        q.error = query_error::short_header;
        return q;
    }
    const uint8_t* msg = bytes_of(msg_span);
    q.hdr = header_at(msg);
    if (q.hdr.qr()) {
        q.error = query_error::is_response;
        return q;
    }
    if (size > max_message_size) {
        q.error = query_error::message_too_long;
        return q;
    }
    if (q.hdr.opcode() != 0) {
        q.error = query_error::not_implemented;
        return q;
    }
    if (q.hdr.qdcount != 1) {
        q.error = query_error::bad_qdcount;
        return q;
    }
    const size_t records = size_t{q.hdr.ancount} + q.hdr.nscount + q.hdr.arcount;
    if (min_question_size + records * min_rr_size > size - header_size) {
        q.error = query_error::counts_exceed_message;
        return q;
    }

    const decoded_name n = decode_name(msg_span, header_size, name_buf);
    if (n.error != name_error::none) {
        q.error = to_query_error(n.error);
        return q;
    }
    size_t pos = n.end;
    if (size - pos < 4) {
        q.error = query_error::truncated;
        return q;
    }
    q.qname = n.text;
    q.qname_wire_size = n.wire_size;
    q.qname_exact = n.exact;
    q.qtype = get16(msg + pos);
    q.qclass = get16(msg + pos + 2);
    pos += 4;
    q.question = msg_span.subspan(header_size, pos - header_size);

    const size_t an_ns = size_t{q.hdr.ancount} + q.hdr.nscount;
    for (size_t i = 0; i < records; ++i) {
        const rr_view rr = read_rr(msg, size, pos);
        if (rr.status != name_status::ok) {
            q.error = to_query_error(rr.status);
            return q;
        }
        if (rr.type == rr_type::opt) {
            // RFC 6891 §6.1.1: one OPT, in the additional section, owned by the root.
            if (i < an_ns || q.opt.present || msg[rr.owner] != 0) {
                q.error = query_error::bad_opt;
                return q;
            }
            q.opt = edns_from(msg, rr);
            if (!read_edns_options(msg + rr.rdata, rr.rdlen, q.opt)) {
                q.error = query_error::bad_opt;
                return q;
            }
        }
        pos = rr.end;
    }
    q.trailing_bytes = static_cast<uint16_t>(size - pos);
    if (q.opt.present && q.opt.version != 0) {
        q.error = query_error::bad_edns_version;
    }
    return q;
}

uint16_t max_udp_response_size(const query& q, uint16_t our_max) noexcept {
    if (!q.opt.present) {
        return classic_udp_size;
    }
    const uint16_t theirs = std::max(q.opt.udp_payload_size, classic_udp_size);
    return std::max(std::min(theirs, our_max), classic_udp_size);
}

build_result build_response(const query& q, const response_spec& spec, std::span<std::byte> out) noexcept {
    const auto code = static_cast<uint16_t>(spec.code);
    if ((q.error != query_error::none && q.error != query_error::bad_edns_version) || code > 0xfff ||
        (code > 0xf && !q.opt.present)) {
        return {build_error::bad_spec};
    }
    const question_labels ql = labels_of_question(q.question);
    if (!ql.ok) {
        return {build_error::bad_spec};
    }
    dotted_name zone, mname, rname;
    if (spec.soa != nullptr) {
        zone = split_dotted(spec.soa->zone);
        mname = split_dotted(spec.soa->mname);
        rname = split_dotted(spec.soa->rname);
        if (!zone.ok || !mname.ok || !rname.ok) {
            return {build_error::bad_name};
        }
    }
    const size_t cap = std::min(out.size(), max_message_size);
    const size_t opt_size = q.opt.present ? opt_rr_size : 0;
    const size_t qsize = q.question.size();
    if (header_size + qsize + opt_size > cap) {
        return {build_error::no_space};
    }

    uint8_t* p = bytes_of(out);
    // Records may use everything but the room that OPT needs; OPT goes last, after we know whether they fit.
    writer w{p, cap - opt_size, header_size};
    w.copy(q.question.data(), qsize);
    const uint8_t* qwire = p + header_size;
    size_t ancount = 0;
    size_t nscount = 0;
    for (const auto& addr : spec.a) {
        w.u16(pointer_to_question);
        w.u16(rr_type::a);
        w.u16(class_in);
        w.u32(spec.ttl);
        w.u16(4);
        w.copy(addr.data(), addr.size());
        ++ancount;
    }
    for (const auto& addr : spec.aaaa) {
        w.u16(pointer_to_question);
        w.u16(rr_type::aaaa);
        w.u16(class_in);
        w.u32(spec.ttl);
        w.u16(16);
        w.copy(addr.data(), addr.size());
        ++ancount;
    }
    if (spec.soa != nullptr) {
        const soa_record& s = *spec.soa;
        write_name(w, zone, s.zone, qwire, ql);
        w.u16(rr_type::soa);
        w.u16(class_in);
        w.u32(std::min(s.ttl, s.minimum));
        const size_t rdlen_at = w.pos;
        w.u16(0);
        write_name(w, mname, s.mname, qwire, ql);
        write_name(w, rname, s.rname, qwire, ql);
        w.u32(s.serial);
        w.u32(s.refresh);
        w.u32(s.retry);
        w.u32(s.expire);
        w.u32(s.minimum);
        if (!w.failed) {
            put16(p + rdlen_at, static_cast<uint16_t>(w.pos - rdlen_at - 2));
        }
        nscount = 1;
    }
    build_result r;
    if (w.failed || ancount != spec.a.size() + spec.aaaa.size()) {
        // RFC 2181 §9: a response that lost records says so with TC; the client retries over TCP.
        r.truncated = true;
        w.failed = false;
        w.pos = header_size + qsize;
        ancount = 0;
        nscount = 0;
    }
    w.cap = cap;

    auto flags = static_cast<uint16_t>(flag_qr | (q.hdr.flags & (opcode_mask | flag_rd | flag_cd)) | (code & 0xf));
    flags |= spec.aa ? flag_aa : 0;
    flags |= spec.ra ? flag_ra : 0;
    flags |= r.truncated ? flag_tc : 0;
    put16(p, q.hdr.id);
    put16(p + 2, flags);
    put16(p + 4, 1);
    put16(p + 6, static_cast<uint16_t>(ancount));
    put16(p + 8, static_cast<uint16_t>(nscount));
    put16(p + 10, q.opt.present ? 1 : 0);

    if (q.opt.present) {
        w.u8(0);
        w.u16(rr_type::opt);
        w.u16(spec.udp_payload_size);
        // TTL field: extended rcode, version 0, DO echoed (RFC 3225 §3).
        w.u32(((uint32_t{code} >> 4) << 24) | (q.opt.dnssec_ok ? edns_do : 0u));
        const size_t rdlen_at = w.pos;
        w.u16(0);
        if (spec.allow_padding && q.opt.padding && cap - w.pos >= edns_option_header) {
            // RFC 8467 §4.1: pad to a multiple of 468; when the limit is lower, pad up to the limit.
            const size_t unpadded = w.pos + edns_option_header;
            size_t target = (unpadded + response_padding_block - 1) / response_padding_block * response_padding_block;
            target = std::min(target, cap);
            const size_t pad = target - unpadded;
            w.u16(edns_option_padding);
            w.u16(static_cast<uint16_t>(pad));
            std::memset(p + w.pos, 0, pad); // RFC 7830 §3: padding octets are 0x00
            w.pos += pad;
            put16(p + rdlen_at, static_cast<uint16_t>(edns_option_header + pad));
            r.padded = true;
        }
    }
    r.size = static_cast<uint16_t>(w.pos);
    return r;
}

build_result build_header_response(std::span<const std::byte> msg, rcode code, std::span<std::byte> out) noexcept {
    const auto c = static_cast<uint16_t>(code);
    if (msg.size() < header_size || c > 0xf) {
        return {build_error::bad_spec};
    }
    if (out.size() < header_size) {
        return {build_error::no_space};
    }
    const header h = header_at(bytes_of(msg));
    uint8_t* p = bytes_of(out);
    put16(p, h.id);
    put16(p + 2, static_cast<uint16_t>(flag_qr | (h.flags & (opcode_mask | flag_rd | flag_cd)) | c));
    std::memset(p + 4, 0, header_size - 4);
    return {build_error::none, static_cast<uint16_t>(header_size)};
}

std::optional<header> read_header(std::span<const std::byte> msg) noexcept {
    if (msg.size() < header_size) {
        return std::nullopt;
    }
    return header_at(bytes_of(msg));
}

bool set_message_id(std::span<std::byte> msg, uint16_t id) noexcept {
    if (msg.size() < header_size) {
        return false;
    }
    put16(bytes_of(msg), id);
    return true;
}

upstream_check validate_response(std::span<const std::byte> resp, uint16_t id,
                                 std::span<const std::byte> sent_question) noexcept {
    upstream_check c;
    const size_t size = resp.size();
    if (size < header_size) {
        c.error = upstream_error::short_header;
        return c;
    }
    const uint8_t* msg = bytes_of(resp);
    const header h = header_at(msg);
    c.rcode = h.rcode_low();
    c.truncated = h.tc();
    if (h.id != id) {
        c.error = upstream_error::id_mismatch;
        return c;
    }
    if (!h.qr()) {
        c.error = upstream_error::not_response;
        return c;
    }
    if (h.opcode() != 0) {
        c.error = upstream_error::bad_opcode;
        return c;
    }
    if (h.qdcount != 1) {
        c.error = upstream_error::bad_qdcount;
        return c;
    }
    if (size > max_message_size) {
        c.error = upstream_error::malformed;
        return c;
    }

    // Compare the response's question name, label by label and case-insensitively, with the uncompressed name we
    // sent. The sent name is bounds-checked too: it is a caller's buffer.
    const uint8_t* sent = bytes_of(sent_question);
    const size_t sent_name_size = sent_question.size() >= min_question_size ? sent_question.size() - 4 : 0;
    size_t sent_pos = 0;
    bool same = sent_name_size != 0;
    const name_span n = walk_name(msg, size, header_size, [&](const uint8_t* label, size_t len) noexcept {
        if (!same) {
            return;
        }
        if (sent_pos >= sent_name_size || sent[sent_pos] != len || sent_name_size - sent_pos - 1 < len) {
            same = false;
            return;
        }
        for (size_t i = 0; i < len; ++i) {
            if (fold(label[i]) != fold(sent[sent_pos + 1 + i])) {
                same = false;
                return;
            }
        }
        sent_pos += 1 + len;
    });
    if (n.status != name_status::ok || size - n.end < 4) {
        c.error = upstream_error::malformed;
        return c;
    }
    if (!same || sent_pos + 1 != sent_name_size || sent[sent_pos] != 0) {
        c.error = upstream_error::qname_mismatch;
        return c;
    }
    if (get16(msg + n.end) != get16(sent + sent_name_size)) {
        c.error = upstream_error::qtype_mismatch;
        return c;
    }
    if (get16(msg + n.end + 2) != get16(sent + sent_name_size + 2)) {
        c.error = upstream_error::qclass_mismatch;
        return c;
    }

    size_t pos = n.end + 4;
    const size_t records = size_t{h.ancount} + h.nscount + h.arcount;
    const size_t an_ns = size_t{h.ancount} + h.nscount;
    bool seen_opt = false;
    for (size_t i = 0; i < records; ++i) {
        const rr_view rr = read_rr(msg, size, pos);
        if (rr.status != name_status::ok) {
            c.error = upstream_error::malformed;
            return c;
        }
        if (rr.type == rr_type::opt) {
            if (i < an_ns || seen_opt || msg[rr.owner] != 0) {
                c.error = upstream_error::malformed;
                return c;
            }
            seen_opt = true;
            c.rcode = static_cast<uint16_t>(c.rcode | ((rr.ttl >> 24) << 4));
        }
        pos = rr.end;
    }
    return c;
}

ttl_result response_cache_ttl(std::span<const std::byte> resp, uint32_t floor, uint32_t cap) noexcept {
    ttl_result r;
    const size_t size = resp.size();
    if (size < header_size || size > max_message_size) {
        return r;
    }
    const uint8_t* msg = bytes_of(resp);
    const header h = header_at(msg);
    size_t pos = skip_questions(msg, size, h);
    if (pos == 0) {
        return r;
    }
    uint32_t min_ttl = 0xffffffff;
    uint32_t soa_minimum = 0xffffffff;
    bool has_soa = false;
    bool extended_rcode = false;
    const size_t an_ns = size_t{h.ancount} + h.nscount;
    const size_t records = an_ns + h.arcount;
    for (size_t i = 0; i < records; ++i) {
        const rr_view rr = read_rr(msg, size, pos);
        if (rr.status != name_status::ok) {
            return r;
        }
        pos = rr.end;
        if (i >= an_ns) {
            if (rr.type == rr_type::opt && (rr.ttl >> 24) != 0) {
                extended_rcode = true;
            }
            continue;
        }
        min_ttl = std::min(min_ttl, sane_ttl(rr.ttl));
        if (rr.type == rr_type::soa && i >= h.ancount) {
            // RDATA: mname, rname (possibly compressed), then serial, refresh, retry, expire, minimum.
            const size_t rdata_end = rr.rdata + rr.rdlen;
            const name_span m = skip_name(msg, rdata_end, rr.rdata);
            if (m.status != name_status::ok) {
                return r;
            }
            const name_span rn = skip_name(msg, rdata_end, m.end);
            if (rn.status != name_status::ok || rdata_end - rn.end != 20) {
                return r;
            }
            soa_minimum = std::min(soa_minimum, sane_ttl(get32(msg + rdata_end - 4)));
            has_soa = true;
        }
    }
    r.status = ttl_status::uncacheable;
    const uint8_t rc = h.rcode_low();
    if (h.tc() || extended_rcode || (rc != 0 && rc != 3)) {
        return r;
    }
    const bool negative = rc == 3 || h.ancount == 0;
    if (negative) {
        if (!has_soa) {
            return r;
        }
        min_ttl = std::min(min_ttl, soa_minimum);
    }
    r.status = ttl_status::cacheable;
    r.ttl = std::min(std::max(min_ttl, floor), cap);
    return r;
}

bool decrement_ttls(std::span<std::byte> msg_span, uint32_t elapsed) noexcept {
    const size_t size = msg_span.size();
    if (size < header_size || size > max_message_size) {
        return false;
    }
    uint8_t* msg = bytes_of(msg_span);
    const header h = header_at(msg);
    size_t pos = skip_questions(msg, size, h);
    if (pos == 0) {
        return false;
    }
    const size_t records = size_t{h.ancount} + h.nscount + h.arcount;
    for (size_t i = 0; i < records; ++i) {
        const rr_view rr = read_rr(msg, size, pos);
        if (rr.status != name_status::ok) {
            return false;
        }
        if (rr.type != rr_type::opt) {
            const uint32_t ttl = sane_ttl(rr.ttl);
            put32(msg + rr.fixed + 4, ttl > elapsed ? ttl - elapsed : 0);
        }
        pos = rr.end;
    }
    return true;
}

size_t pad_response(std::span<std::byte> buf, size_t len, uint16_t udp_payload_size) noexcept {
    const size_t cap = std::min(buf.size(), max_message_size);
    if (len < header_size || len > cap) {
        return len;
    }
    uint8_t* msg = bytes_of(buf);
    const header h = header_at(msg);
    size_t pos = skip_questions(msg, len, h);
    if (pos == 0) {
        return len;
    }
    const size_t records = size_t{h.ancount} + h.nscount + h.arcount;
    rr_view last{};
    for (size_t i = 0; i < records; ++i) {
        last = read_rr(msg, len, pos);
        if (last.status != name_status::ok || (last.type == rr_type::opt && i + 1 != records)) {
            return len; // an OPT that is not the last record is left alone
        }
        pos = last.end;
    }
    if (pos != len) {
        return len; // trailing bytes: not a message we understand
    }
    size_t rdlen_at = 0;
    if (h.arcount > 0 && last.type == rr_type::opt) {
        // Keep every option but Padding, in place.
        if (last.owner + 1 != last.fixed) {
            return len; // OPT's owner must be the root
        }
        size_t in = last.rdata, out = last.rdata;
        while (in < last.end) {
            if (last.end - in < edns_option_header) {
                return len;
            }
            const size_t olen = get16(msg + in + 2);
            if (last.end - in - edns_option_header < olen) {
                return len;
            }
            if (get16(msg + in) != edns_option_padding) {
                std::memmove(msg + out, msg + in, edns_option_header + olen);
                out += edns_option_header + olen;
            }
            in += edns_option_header + olen;
        }
        len = out;
        rdlen_at = last.fixed + 8;
    } else {
        if (records > 0 && last.type == rr_type::opt) {
            return len; // OPT in the answer or authority section
        }
        if (h.arcount == 0xffff || cap - len < opt_rr_size) {
            return len;
        }
        uint8_t* o = msg + len;
        o[0] = 0;
        put16(o + 1, rr_type::opt);
        put16(o + 3, udp_payload_size);
        put32(o + 5, 0);
        put16(o + 9, 0);
        put16(msg + 10, static_cast<uint16_t>(h.arcount + 1));
        rdlen_at = len + 9;
        len += opt_rr_size;
    }
    if (cap - len >= edns_option_header) {
        const size_t unpadded = len + edns_option_header;
        size_t target = (unpadded + response_padding_block - 1) / response_padding_block * response_padding_block;
        target = std::min(target, cap);
        const size_t pad = target - unpadded;
        put16(msg + len, edns_option_padding);
        put16(msg + len + 2, static_cast<uint16_t>(pad));
        std::memset(msg + len + edns_option_header, 0, pad); // RFC 7830 §3: padding octets are 0x00
        len = target;
    }
    put16(msg + rdlen_at, static_cast<uint16_t>(len - (rdlen_at + 2)));
    return len;
}

} // namespace zt::dns
