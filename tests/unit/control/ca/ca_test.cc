// control::ca: issued certificates are checked by the real `openssl` (verify,
// x509, pkey) and by an in-memory wolfSSL TLS 1.3 mutual-auth handshake.
#include "control/ca/ca.hh"

#include <doctest/doctest.h>

// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
// clang-format on

#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace ca = zt::control::ca;
using zt::config::endpoint_kind;
using zt::config::key_type;

struct temp_dir {
    std::string path;
    temp_dir() {
        char tmpl[] = "/tmp/zt-ca-test.XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~temp_dir() { std::filesystem::remove_all(path); }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;

    // Writes `content` to <dir>/<name> and returns the full path.
    std::string put(const std::string& name, const std::string& content) const {
        auto p = path + "/" + name;
        std::ofstream(p, std::ios::binary) << content;
        return p;
    }
    std::string read(const std::string& name) const {
        std::ifstream in(path + "/" + name, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(in), {});
    }
};

struct run_result {
    int status = -1;
    std::string out; ///< stdout and stderr
};

run_result run(const std::string& cmd) {
    run_result r;
    FILE* p = popen((cmd + " 2>&1").c_str(), "r");
    REQUIRE(p != nullptr);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) {
        r.out.append(buf, n);
    }
    int st = pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

bool has(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

std::string upper(std::string s) {
    std::ranges::transform(s, s.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return s;
}

// How `openssl x509 -dates` prints a time: "Nov  6 00:19:00 2035 GMT".
std::string openssl_date(int64_t t) {
    time_t tt = static_cast<time_t>(t);
    struct tm tm {};
    gmtime_r(&tt, &tm);
    char buf[64];
    strftime(buf, sizeof(buf), "%b %e %H:%M:%S %Y GMT", &tm);
    return buf;
}

std::string x509_fields(const temp_dir& d, const std::string& cert) {
    auto r = run("openssl x509 -noout -subject -issuer -dates -serial -in " + d.path + "/" + cert +
                 " -ext subjectAltName,extendedKeyUsage,basicConstraints,keyUsage,subjectKeyIdentifier,"
                 "authorityKeyIdentifier");
    REQUIRE_MESSAGE(r.status == 0, r.out);
    return r.out;
}

run_result verify(const temp_dir& d, const std::string& ca_file, const std::string& cert,
                  const std::string& purpose = "") {
    std::string opt = purpose.empty() ? "" : " -purpose " + purpose;
    return run("openssl verify -x509_strict" + opt + " -CAfile " + d.path + "/" + ca_file + " " + d.path + "/" + cert);
}

// The key parses with openssl and belongs to the certificate.
void check_key_pair(const temp_dir& d, const std::string& cert, const std::string& key) {
    auto k = run("openssl pkey -noout -in " + d.path + "/" + key);
    CHECK_MESSAGE(k.status == 0, k.out);
    auto pub_from_key = run("openssl pkey -pubout -in " + d.path + "/" + key);
    auto pub_from_cert = run("openssl x509 -noout -pubkey -in " + d.path + "/" + cert);
    REQUIRE(pub_from_key.status == 0);
    REQUIRE(pub_from_cert.status == 0);
    CHECK(pub_from_key.out == pub_from_cert.out);
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "(no error)";
}

auto never_taken = [](const std::string&) { return false; };

bool is_cn(const std::string& cn, char prefix) {
    return cn.size() == 13 && cn[0] == prefix && std::all_of(cn.begin() + 1, cn.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
}

// ---- in-memory TLS (no sockets): each side reads the other's output queue ----

struct wire {
    std::string data;
};

int mem_recv(WOLFSSL*, char* buf, int sz, void* ctx) {
    auto* w = static_cast<wire*>(ctx);
    if (w->data.empty()) {
        return WOLFSSL_CBIO_ERR_WANT_READ;
    }
    size_t n = std::min(w->data.size(), static_cast<size_t>(sz));
    std::copy_n(w->data.data(), n, buf);
    w->data.erase(0, n);
    return static_cast<int>(n);
}

int mem_send(WOLFSSL*, char* buf, int sz, void* ctx) {
    static_cast<wire*>(ctx)->data.append(buf, static_cast<size_t>(sz));
    return sz;
}

using ctx_ptr = std::unique_ptr<WOLFSSL_CTX, decltype(&wolfSSL_CTX_free)>;
using ssl_ptr = std::unique_ptr<WOLFSSL, decltype(&wolfSSL_free)>;

ctx_ptr make_ctx(bool server, const std::string& ca_pem, const ca::issued& id) {
    REQUIRE(wolfSSL_Init() == WOLFSSL_SUCCESS);
    ctx_ptr ctx(wolfSSL_CTX_new(server ? wolfTLSv1_3_server_method() : wolfTLSv1_3_client_method()), &wolfSSL_CTX_free);
    REQUIRE(ctx);
    auto buf = [](const std::string& s) { return reinterpret_cast<const unsigned char*>(s.data()); };
    auto len = [](const std::string& s) { return static_cast<long>(s.size()); };
    REQUIRE(wolfSSL_CTX_use_certificate_buffer(ctx.get(), buf(id.cert_pem), len(id.cert_pem), WOLFSSL_FILETYPE_PEM) ==
            WOLFSSL_SUCCESS);
    REQUIRE(wolfSSL_CTX_use_PrivateKey_buffer(ctx.get(), buf(id.key_pem), len(id.key_pem), WOLFSSL_FILETYPE_PEM) ==
            WOLFSSL_SUCCESS);
    REQUIRE(wolfSSL_CTX_load_verify_buffer(ctx.get(), buf(ca_pem), len(ca_pem), WOLFSSL_FILETYPE_PEM) ==
            WOLFSSL_SUCCESS);
    int mode = WOLFSSL_VERIFY_PEER | (server ? WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
    wolfSSL_CTX_set_verify(ctx.get(), mode, nullptr);
    wolfSSL_CTX_SetIORecv(ctx.get(), mem_recv);
    wolfSSL_CTX_SetIOSend(ctx.get(), mem_send);
    return ctx;
}

struct handshake_result {
    bool client_ok = false;
    bool server_ok = false;
    std::string peer_cn;  ///< the client CN as the server sees it
    std::string app_data; ///< what the server read after the handshake
    int server_error = 0; ///< wolfSSL_get_error on the server if it failed
};

handshake_result handshake(const std::string& server_ca, const ca::issued& server_id, const std::string& client_ca,
                           const ca::issued& client_id) {
    auto sctx = make_ctx(true, server_ca, server_id);
    auto cctx = make_ctx(false, client_ca, client_id);
    ssl_ptr s(wolfSSL_new(sctx.get()), &wolfSSL_free);
    ssl_ptr c(wolfSSL_new(cctx.get()), &wolfSSL_free);
    REQUIRE(s);
    REQUIRE(c);
    wire to_server, to_client;
    wolfSSL_SetIOReadCtx(s.get(), &to_server);
    wolfSSL_SetIOWriteCtx(s.get(), &to_client);
    wolfSSL_SetIOReadCtx(c.get(), &to_client);
    wolfSSL_SetIOWriteCtx(c.get(), &to_server);
    REQUIRE(wolfSSL_check_domain_name(c.get(), server_id.cn.c_str()) == WOLFSSL_SUCCESS);

    handshake_result r;
    bool client_failed = false, server_failed = false;
    int client_error = 0;
    auto step = [](WOLFSSL* ssl, int ret, bool& ok, bool& failed, int& error) {
        if (ret == WOLFSSL_SUCCESS) {
            ok = true;
            return;
        }
        int err = wolfSSL_get_error(ssl, ret);
        if (err != WOLFSSL_ERROR_WANT_READ && err != WOLFSSL_ERROR_WANT_WRITE) {
            failed = true;
            error = err;
        }
    };
    for (int turn = 0; turn < 50 && !(r.client_ok && r.server_ok) && !client_failed && !server_failed; ++turn) {
        if (!r.client_ok) {
            step(c.get(), wolfSSL_connect(c.get()), r.client_ok, client_failed, client_error);
        }
        if (!r.server_ok) {
            step(s.get(), wolfSSL_accept(s.get()), r.server_ok, server_failed, r.server_error);
        }
    }
    if (r.client_ok && r.server_ok) {
        if (WOLFSSL_X509* peer = wolfSSL_get_peer_certificate(s.get())) {
            if (const char* cn = wolfSSL_X509_get_subjectCN(peer)) {
                r.peer_cn = cn;
            }
            wolfSSL_X509_free(peer);
        }
        REQUIRE(wolfSSL_write(c.get(), "hello", 5) == 5);
        char buf[16];
        int n = wolfSSL_read(s.get(), buf, sizeof(buf));
        if (n > 0) {
            r.app_data.assign(buf, static_cast<size_t>(n));
        }
    }
    return r;
}

} // namespace

TEST_CASE("random_cn: c or s followed by 12 lowercase hex digits, all different") {
    std::set<std::string> seen;
    for (int i = 0; i < 200; ++i) {
        auto c = ca::random_cn(endpoint_kind::client);
        auto s = ca::random_cn(endpoint_kind::service);
        CHECK(is_cn(c, 'c'));
        CHECK(is_cn(s, 's'));
        seen.insert(c);
        seen.insert(s);
    }
    CHECK(seen.size() == 400);
}

TEST_CASE("the CA certificate is a self-signed ECDSA P-256 CA with critical CA:TRUE") {
    auto authority = ca::authority::create(key_type::ecdsa_p256);
    temp_dir d;
    d.put("ca.crt", authority.cert_pem());
    d.put("ca.key", authority.key_pem());
    CHECK(has(authority.key_pem(), "-----BEGIN PRIVATE KEY-----"));

    auto v = verify(d, "ca.crt", "ca.crt");
    CHECK_MESSAGE(v.status == 0, v.out);
    auto f = x509_fields(d, "ca.crt");
    CHECK(has(f, "subject=CN = ZeroTrust CA\n"));
    CHECK(has(f, "issuer=CN = ZeroTrust CA\n"));
    CHECK(has(f, "X509v3 Basic Constraints: critical\n    CA:TRUE\n"));
    CHECK(has(f, "X509v3 Key Usage: critical\n    Certificate Sign, CRL Sign\n"));
    CHECK(has(f, "X509v3 Subject Key Identifier:"));
    auto text = run("openssl x509 -noout -text -in " + d.path + "/ca.crt").out;
    CHECK(has(text, "ecdsa-with-SHA256"));
    CHECK(has(text, "NIST CURVE: P-256"));
    // Ten years by default, backdated one hour.
    CHECK(run("openssl x509 -noout -checkend " + std::to_string(3650 * 86400 - 120) + " -in " + d.path + "/ca.crt")
              .status == 0);
    CHECK(run("openssl x509 -noout -checkend " + std::to_string(3650 * 86400 + 120) + " -in " + d.path + "/ca.crt")
              .status != 0);
    check_key_pair(d, "ca.crt", "ca.key");
}

TEST_CASE("the server certificate has the server name, DNS and IP SANs and serverAuth") {
    auto authority = ca::authority::create(key_type::ecdsa_p256);
    auto server =
        authority.issue_server("ztdns.local", {"203.0.113.50", "2001:db8::50", "proxy.example.net", "ztdns.local"},
                               key_type::ecdsa_p256, 3650);
    temp_dir d;
    d.put("ca.crt", authority.cert_pem());
    d.put("server.crt", server.cert_pem);
    d.put("server.key", server.key_pem);

    auto v = verify(d, "ca.crt", "server.crt", "sslserver");
    CHECK_MESSAGE(v.status == 0, v.out);
    CHECK(server.cn == "ztdns.local");
    auto f = x509_fields(d, "server.crt");
    CHECK(has(f, "subject=CN = ztdns.local\n"));
    CHECK(has(f, "issuer=CN = ZeroTrust CA\n"));
    // The server name comes first and is not repeated.
    CHECK(has(f, "X509v3 Subject Alternative Name: \n    DNS:ztdns.local, IP Address:203.0.113.50, "
                 "IP Address:2001:DB8:0:0:0:0:0:50, DNS:proxy.example.net\n"));
    CHECK(has(f, "X509v3 Extended Key Usage: \n    TLS Web Server Authentication\n"));
    CHECK(has(f, "X509v3 Basic Constraints: critical\n    CA:FALSE\n"));
    CHECK(has(f, "X509v3 Key Usage: critical\n    Digital Signature\n"));
    CHECK(has(f, "X509v3 Authority Key Identifier:"));
    CHECK(has(f, "notAfter=" + openssl_date(server.not_after) + "\n"));
    check_key_pair(d, "server.crt", "server.key");

    CHECK(has(error_of([&] { authority.issue_server("ztdns.local", {"bad name!"}, key_type::ecdsa_p256, 10); }),
              "\"bad name!\" is neither an IP address nor a valid DNS name"));
}

TEST_CASE("client and service certificates: CN, O, issuer, serial, dates, EKU") {
    auto authority = ca::authority::create(key_type::ecdsa_p256);
    auto before = static_cast<int64_t>(std::time(nullptr));
    auto client =
        authority.issue_endpoint(endpoint_kind::client, "Alice-Laptop", key_type::ecdsa_p256, 30, never_taken);
    auto service =
        authority.issue_endpoint(endpoint_kind::service, "PostgreSQL Prod", key_type::ecdsa_p256, 3650, never_taken);
    temp_dir d;
    d.put("ca.crt", authority.cert_pem());
    d.put("client.crt", client.cert_pem);
    d.put("client.key", client.key_pem);
    d.put("service.crt", service.cert_pem);
    d.put("service.key", service.key_pem);

    CHECK(is_cn(client.cn, 'c'));
    CHECK(is_cn(service.cn, 's'));
    CHECK(client.not_after >= before + 30 * 86400);
    CHECK(client.not_after <= before + 30 * 86400 + 5);

    auto fc = x509_fields(d, "client.crt");
    CHECK(has(fc, "subject=CN = " + client.cn + ", O = Client-Alice-Laptop\n"));
    CHECK(has(fc, "issuer=CN = ZeroTrust CA\n"));
    CHECK(has(fc, "X509v3 Extended Key Usage: \n    TLS Web Client Authentication\n"));
    CHECK(has(fc, "X509v3 Basic Constraints: critical\n    CA:FALSE\n"));
    CHECK(has(fc, "notBefore=" + openssl_date(client.not_after - 30 * 86400 - 3600) + "\n"));
    CHECK(has(fc, "notAfter=" + openssl_date(client.not_after) + "\n"));
    // 16 random bytes, positive: 32 hex digits, the first below 8.
    REQUIRE(client.serial_hex.size() == 32);
    CHECK(client.serial_hex[0] < '8');
    CHECK(has(fc, "serial=" + upper(client.serial_hex) + "\n"));
    CHECK(client.serial_hex != service.serial_hex);
    CHECK(
        run("openssl x509 -noout -checkend " + std::to_string(29 * 86400) + " -in " + d.path + "/client.crt").status ==
        0);
    CHECK(
        run("openssl x509 -noout -checkend " + std::to_string(31 * 86400) + " -in " + d.path + "/client.crt").status !=
        0);

    auto fs = x509_fields(d, "service.crt");
    CHECK(has(fs, "subject=CN = " + service.cn + ", O = Service-PostgreSQL Prod\n"));
    CHECK(has(fs, "X509v3 Extended Key Usage: \n    TLS Web Server Authentication, TLS Web Client Authentication\n"));

    auto v = verify(d, "ca.crt", "client.crt", "sslclient");
    CHECK_MESSAGE(v.status == 0, v.out);
    CHECK(verify(d, "ca.crt", "client.crt", "sslserver").status != 0); // a client cert cannot serve
    v = verify(d, "ca.crt", "service.crt", "sslclient");
    CHECK_MESSAGE(v.status == 0, v.out);
    v = verify(d, "ca.crt", "service.crt", "sslserver");
    CHECK_MESSAGE(v.status == 0, v.out);
    check_key_pair(d, "client.crt", "client.key");
    check_key_pair(d, "service.crt", "service.key");
}

TEST_CASE("a certificate from another CA does not verify") {
    auto ours = ca::authority::create(key_type::ecdsa_p256);
    auto theirs = ca::authority::create(key_type::ecdsa_p256); // same name "ZeroTrust CA", other key
    auto foreign = theirs.issue_endpoint(endpoint_kind::client, "Mallory", key_type::ecdsa_p256, 10, never_taken);
    temp_dir d;
    d.put("ca.crt", ours.cert_pem());
    d.put("foreign.crt", foreign.cert_pem);
    auto v = verify(d, "ca.crt", "foreign.crt");
    CHECK(v.status != 0);
    // Same issuer name, different key: the AKID points elsewhere, so openssl finds no issuer.
    CHECK(has(v.out, "unable to get local issuer certificate"));
    CHECK(has(v.out, "verification failed"));
}

TEST_CASE("endpoint names: UTF-8 up to 64 bytes, no control characters") {
    auto authority = ca::authority::create(key_type::ecdsa_p256);
    auto issue = [&](const std::string& name) {
        return error_of(
            [&] { authority.issue_endpoint(endpoint_kind::client, name, key_type::ecdsa_p256, 10, never_taken); });
    };
    CHECK(has(issue("Alice\nLaptop"), "endpoint name contains a control character (U+000A)"));
    CHECK(has(issue("Alice\x7f"), "control character (U+007F)"));
    CHECK(has(issue("Alice\xc2\x85"), "control character (U+0085)"));
    CHECK(has(issue(std::string(65, 'a')), "endpoint name is longer than 64 bytes (65 bytes)"));
    CHECK(has(issue(""), "endpoint name is empty"));
    CHECK(has(issue("bad \xff utf8"), "endpoint name is not valid UTF-8"));
    CHECK(has(issue("overlong \xc0\xaf"), "endpoint name is not valid UTF-8"));

    auto longest =
        authority.issue_endpoint(endpoint_kind::client, std::string(64, 'n'), key_type::ecdsa_p256, 10, never_taken);
    auto utf8 = authority.issue_endpoint(endpoint_kind::service, "Zoë's café", key_type::ecdsa_p256, 10, never_taken);
    temp_dir d;
    d.put("ca.crt", authority.cert_pem());
    d.put("longest.crt", longest.cert_pem);
    d.put("utf8.crt", utf8.cert_pem);
    CHECK(verify(d, "ca.crt", "longest.crt").status == 0);
    CHECK(has(x509_fields(d, "longest.crt"), ", O = Client-" + std::string(64, 'n') + "\n"));
    auto subject = run("openssl x509 -noout -subject -nameopt oneline,-esc_msb -in " + d.path + "/utf8.crt");
    CHECK_MESSAGE(has(subject.out, "O = Service-Zoë's café"), subject.out);
}

TEST_CASE("cn_taken: a CN already in use is drawn again") {
    auto authority = ca::authority::create(key_type::ecdsa_p256);
    std::vector<std::string> asked;
    auto taken_three_times = [&](const std::string& cn) {
        asked.push_back(cn);
        return asked.size() <= 3;
    };
    auto id = authority.issue_endpoint(endpoint_kind::client, "Bob", key_type::ecdsa_p256, 10, taken_three_times);
    REQUIRE(asked.size() == 4);
    CHECK(id.cn == asked[3]);
    CHECK(std::count(asked.begin(), asked.begin() + 3, id.cn) == 0);

    auto always = [](const std::string&) { return true; };
    CHECK(
        has(error_of([&] { authority.issue_endpoint(endpoint_kind::client, "Bob", key_type::ecdsa_p256, 10, always); }),
            "no free endpoint CN"));
}

TEST_CASE("validity must be 1..36500 days") {
    auto authority = ca::authority::create(key_type::ecdsa_p256);
    CHECK(has(error_of([&] { authority.issue_server("ztdns.local", {}, key_type::ecdsa_p256, 0); }),
              "certificate validity must be 1..36500 days, got 0"));
    CHECK(has(error_of([] { ca::authority::create(key_type::ecdsa_p256, 40000); }), "got 40000"));
}

TEST_CASE("load() round trip: the loaded CA issues certificates the original CA certificate verifies") {
    auto original = ca::authority::create(key_type::ecdsa_p256);
    auto loaded = ca::authority::load(original.cert_pem(), original.key_pem());
    CHECK(loaded.cert_pem() == original.cert_pem());
    CHECK(loaded.key_pem() == original.key_pem());
    auto id = loaded.issue_endpoint(endpoint_kind::client, "Carol", key_type::ecdsa_p256, 10, never_taken);
    temp_dir d;
    d.put("ca.crt", original.cert_pem());
    d.put("id.crt", id.cert_pem);
    auto v = verify(d, "ca.crt", "id.crt", "sslclient");
    CHECK_MESSAGE(v.status == 0, v.out);
}

TEST_CASE("load() rejects garbage, a mismatched key, a non-CA certificate and encrypted keys") {
    auto a = ca::authority::create(key_type::ecdsa_p256);
    auto b = ca::authority::create(key_type::ecdsa_p256);
    auto leaf = a.issue_endpoint(endpoint_kind::client, "Dave", key_type::ecdsa_p256, 10, never_taken);

    CHECK(error_of([&] { ca::authority::load("garbage", a.key_pem()); }) ==
          "ca: CA certificate is not a PEM certificate");
    CHECK(error_of([&] { ca::authority::load("", a.key_pem()); }) == "ca: CA certificate is not a PEM certificate");
    auto truncated = a.cert_pem().substr(0, 100) + "\n-----END CERTIFICATE-----\n";
    CHECK(has(error_of([&] { ca::authority::load(truncated, a.key_pem()); }), "ca: CA certificate"));
    CHECK(error_of([&] { ca::authority::load(a.cert_pem(), "garbage"); }) == "ca: CA key is not a PEM private key");
    CHECK(error_of([&] { ca::authority::load(a.cert_pem(), b.key_pem()); }) ==
          "ca: CA key does not match the CA certificate");
    CHECK(error_of([&] { ca::authority::load(leaf.cert_pem, leaf.key_pem); }) ==
          "ca: CA certificate is not a CA certificate (no basicConstraints CA:TRUE)");

    temp_dir d;
    d.put("ca.key", a.key_pem());
    auto enc = run("openssl pkey -aes256 -passout pass:secret -in " + d.path + "/ca.key");
    REQUIRE(enc.status == 0);
    CHECK(has(error_of([&] { ca::authority::load(a.cert_pem(), enc.out); }), "CA key is encrypted"));
    auto rsa = run("openssl genrsa 2048");
    REQUIRE(rsa.status == 0);
    CHECK(error_of([&] { ca::authority::load(a.cert_pem(), rsa.out); }) ==
          "ca: CA key is not an EC private key, as the CA certificate's key is");
}

TEST_CASE("load() adopts a CA made by openssl (PKCS#8 and traditional keys, EC and RSA)") {
    temp_dir d;
    auto make = [&](const std::string& newkey, const std::string& stem) {
        auto r = run("openssl req -x509 -newkey " + newkey + " -nodes -days 30 -subj '/CN=Legacy CA/O=Acme' -keyout " +
                     d.path + "/" + stem + ".key -out " + d.path + "/" + stem + ".crt");
        REQUIRE_MESSAGE(r.status == 0, r.out);
    };
    make("ec -pkeyopt ec_paramgen_curve:P-256", "ec");
    make("rsa:2048", "rsa");
    REQUIRE(run("openssl ec -in " + d.path + "/ec.key -out " + d.path + "/ec-trad.key").status == 0);
    REQUIRE(run("openssl rsa -traditional -in " + d.path + "/rsa.key -out " + d.path + "/rsa-trad.key").status == 0);
    CHECK(has(d.read("ec.key"), "BEGIN PRIVATE KEY"));
    CHECK(has(d.read("ec-trad.key"), "BEGIN EC PRIVATE KEY"));
    CHECK(has(d.read("rsa-trad.key"), "BEGIN RSA PRIVATE KEY"));

    for (auto [stem, key] : {std::pair{"ec", "ec"}, {"ec", "ec-trad"}, {"rsa", "rsa"}, {"rsa", "rsa-trad"}}) {
        CAPTURE(key);
        auto authority = ca::authority::load(d.read(std::string(stem) + ".crt"), d.read(std::string(key) + ".key"));
        auto id = authority.issue_endpoint(endpoint_kind::service, "Legacy", key_type::ecdsa_p256, 10, never_taken);
        d.put("id.crt", id.cert_pem);
        // Plain verify: openssl's own `req -x509` CA lacks keyUsage, which -x509_strict demands.
        auto v = run("openssl verify -CAfile " + d.path + "/" + stem + ".crt " + d.path + "/id.crt");
        CHECK_MESSAGE(v.status == 0, v.out);
        CHECK(has(x509_fields(d, "id.crt"), "issuer=CN = Legacy CA, O = Acme\n"));
    }
}

TEST_CASE("RSA 4096: CA, RSA and ECDSA leaves, load round trip") {
    auto authority = ca::authority::create(key_type::rsa4096);
    auto rsa_leaf = authority.issue_endpoint(endpoint_kind::client, "Erin", key_type::rsa4096, 3650, never_taken);
    auto ec_leaf = authority.issue_server("ztdns.local", {}, key_type::ecdsa_p256, 3650);
    temp_dir d;
    d.put("ca.crt", authority.cert_pem());
    d.put("ca.key", authority.key_pem());
    d.put("rsa.crt", rsa_leaf.cert_pem);
    d.put("rsa.key", rsa_leaf.key_pem);
    d.put("ec.crt", ec_leaf.cert_pem);
    d.put("ec.key", ec_leaf.key_pem);

    auto ca_text = run("openssl x509 -noout -text -in " + d.path + "/ca.crt").out;
    CHECK(has(ca_text, "Public-Key: (4096 bit)"));
    CHECK(has(ca_text, "sha256WithRSAEncryption"));
    auto v = verify(d, "ca.crt", "rsa.crt", "sslclient");
    CHECK_MESSAGE(v.status == 0, v.out);
    v = verify(d, "ca.crt", "ec.crt", "sslserver");
    CHECK_MESSAGE(v.status == 0, v.out);
    auto leaf_text = run("openssl x509 -noout -text -in " + d.path + "/rsa.crt").out;
    CHECK(has(leaf_text, "Public-Key: (4096 bit)"));
    CHECK(has(x509_fields(d, "rsa.crt"), "X509v3 Key Usage: critical\n    Digital Signature, Key Encipherment\n"));
    check_key_pair(d, "ca.crt", "ca.key");
    check_key_pair(d, "rsa.crt", "rsa.key");
    check_key_pair(d, "ec.crt", "ec.key");

    auto loaded = ca::authority::load(authority.cert_pem(), authority.key_pem());
    auto again = loaded.issue_endpoint(endpoint_kind::client, "Erin", key_type::ecdsa_p256, 10, never_taken);
    d.put("again.crt", again.cert_pem);
    v = verify(d, "ca.crt", "again.crt", "sslclient");
    CHECK_MESSAGE(v.status == 0, v.out);
}

TEST_CASE("TLS 1.3 in memory: mutual authentication with issued certificates, server reads the client CN") {
    auto authority = ca::authority::create(key_type::ecdsa_p256);
    auto server = authority.issue_server("ztdns.local", {"203.0.113.50"}, key_type::ecdsa_p256, 3650);
    auto client = authority.issue_endpoint(endpoint_kind::client, "Alice", key_type::ecdsa_p256, 3650, never_taken);
    auto r = handshake(authority.cert_pem(), server, authority.cert_pem(), client);
    CHECK(r.client_ok);
    CHECK(r.server_ok);
    CHECK(r.peer_cn == client.cn);
    CHECK(r.app_data == "hello");
}

TEST_CASE("TLS 1.3 in memory: a client certificate from another CA is refused") {
    auto authority = ca::authority::create(key_type::ecdsa_p256);
    auto other = ca::authority::create(key_type::ecdsa_p256);
    auto server = authority.issue_server("ztdns.local", {}, key_type::ecdsa_p256, 3650);
    auto intruder = other.issue_endpoint(endpoint_kind::client, "Mallory", key_type::ecdsa_p256, 3650, never_taken);
    // The client trusts our CA (so it accepts the server); its own cert is from `other`.
    auto r = handshake(authority.cert_pem(), server, authority.cert_pem(), intruder);
    CHECK_FALSE(r.server_ok);
    CHECK(r.server_error == ASN_NO_SIGNER_E); // "no signer to confirm": the peer cert does not chain to our CA
    CHECK(r.peer_cn.empty());
}
