// The server's handler contract, typed over every backend: from on_open,
// on_data, on_close (a peer's close_notify, a failed handshake, idle expiry,
// replacement by a new handshake, shutdown) and on_refused, a handler may
// send to or close the peer it is called for or any other, and the server
// stays valid: no entry is freed while a callback for it runs, no timer
// points at a freed entry, every association ends with exactly one on_close.
//
// Each case runs real handshakes over in-memory pipes between one server and
// several client endpoints, each at an address of its own. Run under
// AddressSanitizer, a use after free in the server fails the case.
#define BOOST_TEST_MODULE server_handlers
#include <boost/test/unit_test.hpp>

#include "backends.hpp"
#include "support/harness.hpp"

#include <dtlspp/server.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

using namespace dtlspp;
using namespace dtlspp::test;
using namespace std::chrono_literals;

namespace {

enum class callback { on_open, on_data, on_close, on_refused };
enum class action { send_to_self, send_to_other, close_self, close_other };

constexpr action every_action[] = {action::send_to_self, action::send_to_other, action::close_self,
                                   action::close_other};

std::string_view name_of(action a)
{
    switch (a) {
    case action::send_to_self: return "send to self";
    case action::send_to_other: return "send to another open peer";
    case action::close_self: return "close self";
    case action::close_other: return "close another peer";
    }
    return "?";
}

const std::string from_handler = "from the handler";

// A handler that logs every callback and, the first time `trigger` fires
// for `subject`, performs `what` on `subject` or `other`.
template <class Backend>
struct scripted_handler {
    server<Backend>* srv = nullptr;
    test_clock* time = nullptr;
    std::optional<callback> trigger;
    peer_address subject, other;
    action what = action::send_to_self;
    bool fired = false;
    std::error_code result; // of the action

    std::vector<peer_address> opened;
    std::vector<std::pair<peer_address, failure>> closed;
    std::vector<peer_address> refused;
    std::vector<std::pair<peer_address, std::string>> data;

    // on_open and on_data take the association itself: actions on the peer
    // they are called for go through it (association_ref), actions on
    // another peer through the server, so both paths meet every case.
    void on_open(association_ref<Backend> a)
    {
        opened.push_back(a.peer());
        BOOST_TEST(a.association().is_open());
        act(callback::on_open, a.peer(), &a);
    }
    void on_data(association_ref<Backend> a, std::span<const std::byte> d)
    {
        data.emplace_back(a.peer(), as_string(d));
        act(callback::on_data, a.peer(), &a);
    }
    void on_close(const peer_address& p, const failure& why)
    {
        // The association is still there to be read while on_close runs.
        const auto* e = srv->find(p);
        closed.emplace_back(p, why);
        if (!e) closed.back().second.message += " [find() returned nothing during on_close]";
        act(callback::on_close, p);
    }
    void on_refused(const peer_address& p, const failure& why)
    {
        refused.push_back(p);
        if (why.code != errc::too_many_sessions) refused.push_back(peer_address{}); // counted as a defect
        act(callback::on_refused, p);
    }

    std::size_t closes_of(const peer_address& p) const
    {
        return static_cast<std::size_t>(
            std::count_if(closed.begin(), closed.end(), [&](const auto& c) { return c.first == p; }));
    }

private:
    void act(callback cb, const peer_address& p, const association_ref<Backend>* self = nullptr)
    {
        if (fired || !trigger || cb != *trigger || !(p == subject)) return;
        fired = true;
        const bool to_self = what == action::send_to_self || what == action::close_self;
        if (to_self && self) {
            if (what == action::send_to_self)
                self->send(as_bytes(from_handler), result);
            else
                self->close(result);
            return;
        }
        const auto& target = to_self ? subject : other;
        if (what == action::send_to_self || what == action::send_to_other)
            srv->send(target, as_bytes(from_handler), time->now(), result);
        else
            srv->close(target, time->now(), result);
    }
};

// One server<ServerBackend> and client endpoints at addresses of their own,
// on in-memory pipes. A client connected at an address that already has one
// replaces it (a client that restarted on the same address and port).
template <class ServerBackend, class ClientBackend = ServerBackend>
class fleet {
public:
    struct member {
        std::optional<endpoint<ClientBackend>> client;
        std::vector<std::string> received;
        std::vector<bytes> datagrams; // every datagram the server sent to this address
    };

    scripted_handler<ServerBackend> handler;
    test_clock time;

    explicit fleet(server_settings settings = {}, bool virtual_time = runs_on_virtual_time<ServerBackend> &&
                                                                      runs_on_virtual_time<ClientBackend>)
    {
        time.is_virtual = virtual_time;
        failure f;
        auto s = server<ServerBackend>::create(server_config(), settings, f);
        BOOST_REQUIRE_MESSAGE(s, f.what());
        server_.emplace(std::move(*s));
        handler.srv = &*server_;
        handler.time = &time;
    }

    server<ServerBackend>& srv() { return *server_; }
    member& at(const peer_address& p) { return members_[p.to_string()]; }
    endpoint<ClientBackend>& client(const peer_address& p) { return *at(p).client; }

    // Starts a client at `p` and runs until its handshake is over.
    endpoint<ClientBackend>& connect(const peer_address& p, const config& c = client_config())
    {
        failure f;
        auto e = endpoint<ClientBackend>::connect(c, time.now(), f);
        BOOST_REQUIRE_MESSAGE(e, f.what());
        auto& m = at(p);
        m.client.emplace(std::move(*e));
        m.received.clear();
        run_until([&] { return m.client->state() != endpoint_state::handshaking; }, 10s);
        return *m.client;
    }

    // Moves every queued datagram across until nothing moves.
    void pump()
    {
        for (int round = 0; round < 1000; ++round) {
            bool moved = false;
            for (auto& [name, m] : members_) {
                if (!m.client) continue;
                const auto from = peer_address::parse(name);
                std::vector<bytes> up;
                m.client->drain([&](std::span<const std::byte> d) { up.emplace_back(d.begin(), d.end()); });
                for (auto& d : up) {
                    moved = true;
                    server_->receive(from, d, time.now(), handler);
                }
            }
            std::vector<std::pair<peer_address, bytes>> down;
            server_->drain([&](const peer_address& to, std::span<const std::byte> d) {
                down.emplace_back(to, bytes(d.begin(), d.end()));
            });
            for (auto& [to, d] : down) {
                moved = true;
                auto& m = at(to);
                m.datagrams.push_back(d);
                if (m.client)
                    m.client->receive(d, time.now(), [&](std::span<const std::byte> b) { m.received.push_back(as_string(b)); });
            }
            if (!moved) return;
        }
    }

    // Pumps and runs every timer until done() or `limit` of (real or
    // virtual) time has passed.
    template <class Done>
    void run_until(Done done, std::chrono::milliseconds limit)
    {
        const auto give_up = time.now() + limit;
        pump();
        while (!done() && time.now() < give_up) {
            auto next = give_up;
            for (auto& [name, m] : members_)
                if (m.client)
                    if (auto d = m.client->next_deadline()) next = std::min(next, *d);
            if (auto d = server_->next_deadline()) next = std::min(next, *d);
            time.wait_until(next);
            const auto now = time.now();
            for (auto& [name, m] : members_)
                if (m.client) m.client->on_timeout(now);
            server_->on_timeout(now, handler);
            pump();
        }
    }

    // Runs every due timer (and what it sends) without waiting.
    void settle_timers()
    {
        server_->on_timeout(time.now(), handler);
        pump();
    }

    void shutdown()
    {
        server_->shutdown(time.now(), handler);
        pump();
    }

    bool got(const peer_address& p, const std::string& text)
    {
        const auto& r = at(p).received;
        return std::find(r.begin(), r.end(), text) != r.end();
    }

private:
    std::optional<server<ServerBackend>> server_;
    std::map<std::string, member> members_;
};

const peer_address subject_address = peer_address::parse("192.0.2.1:1111");
const peer_address other_address = peer_address::parse("192.0.2.2:2222");
const peer_address third_address = peer_address::parse("192.0.2.3:3333");

// What every case checks once its trigger has fired: the action had the
// effect the contract promises, the other peer is served or closed as asked,
// and after shutdown every association ended with exactly one on_close.
template <class Backend>
void check_outcome(fleet<Backend>& net, action what, bool subject_open_at_trigger, bool other_open_at_trigger,
                   const std::function<void()>& before_shutdown = {})
{
    auto& h = net.handler;
    BOOST_TEST_REQUIRE(h.fired);
    // A close(other) comes back through the timer; run what is due now.
    net.settle_timers();
    switch (what) {
    case action::send_to_self:
        if (subject_open_at_trigger) {
            BOOST_TEST(!h.result, h.result.message());
            BOOST_TEST(net.got(subject_address, from_handler));
        } else {
            BOOST_TEST((h.result == errc::not_open), h.result.message());
            BOOST_TEST(!net.got(subject_address, from_handler));
        }
        break;
    case action::send_to_other:
        BOOST_TEST(!h.result, h.result.message());
        BOOST_TEST(net.got(other_address, from_handler));
        break;
    case action::close_self:
        if (subject_open_at_trigger) {
            BOOST_TEST(!h.result, h.result.message());
            BOOST_TEST(net.srv().find(subject_address) == nullptr);
            BOOST_TEST(h.closes_of(subject_address) == 1u);
            // The client was told: it read a close_notify.
            BOOST_TEST((net.client(subject_address).state() == endpoint_state::closed));
            BOOST_TEST((net.client(subject_address).error() == errc::peer_closed),
                       net.client(subject_address).last_failure().what());
        } else {
            BOOST_TEST((h.result == errc::not_open), h.result.message());
        }
        break;
    case action::close_other:
        if (other_open_at_trigger) {
            BOOST_TEST(!h.result, h.result.message());
            BOOST_TEST(net.srv().find(other_address) == nullptr);
            BOOST_TEST(h.closes_of(other_address) == 1u);
            BOOST_TEST((net.client(other_address).state() == endpoint_state::closed));
            BOOST_TEST((net.client(other_address).error() == errc::peer_closed),
                       net.client(other_address).last_failure().what());
        } else {
            BOOST_TEST((h.result == errc::not_open), h.result.message());
        }
        break;
    }

    // Whatever survived still works: it echoes nothing by itself, so send
    // from outside any handler and read it at the client.
    for (const auto& p : {subject_address, other_address, third_address}) {
        if (!net.srv().find(p) || !net.srv().find(p)->is_open()) continue;
        std::error_code ec;
        net.srv().send(p, as_bytes(std::string("after")), net.time.now(), ec);
        net.pump();
        BOOST_TEST(!ec, p.to_string() + ": " + ec.message());
        BOOST_TEST(net.got(p, "after"), p.to_string());
    }

    if (before_shutdown) before_shutdown();
    net.shutdown();
    BOOST_TEST(net.srv().session_count() == 0u);
    BOOST_TEST(!net.srv().next_deadline());
    const auto& k = net.srv().counters();
    BOOST_TEST(h.closed.size() == k.sessions_created);
    BOOST_TEST(k.sessions_closed + k.sessions_failed + k.sessions_expired == k.sessions_created);
    for (const auto& [peer, why] : h.closed)
        BOOST_TEST(why.message.find("find() returned nothing") == std::string::npos, peer.to_string() + ": " + why.what());
    // The server is still usable afterwards.
    const auto late = peer_address::parse("192.0.2.9:9999");
    h.trigger.reset();
    BOOST_TEST(net.connect(late).is_open());
    BOOST_TEST(net.srv().session_count() == 1u);
}

template <class Backend>
void open_subject_and_other(fleet<Backend>& net)
{
    BOOST_TEST_REQUIRE(net.connect(other_address).is_open());
    BOOST_TEST_REQUIRE(net.connect(subject_address).is_open());
}

} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(on_open_may_send_or_close_on_any_peer, Backend, all_backends)
{
    for (const auto what : every_action) {
        BOOST_TEST_CONTEXT(name_of(what))
        {
            fleet<Backend> net;
            net.handler.trigger = callback::on_open;
            net.handler.subject = subject_address;
            net.handler.other = other_address;
            net.handler.what = what;
            BOOST_TEST_REQUIRE(net.connect(other_address).is_open());
            net.connect(subject_address);
            net.pump();
            check_outcome(net, what, true, true);
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(on_data_may_send_or_close_on_any_peer, Backend, all_backends)
{
    for (const auto what : every_action) {
        BOOST_TEST_CONTEXT(name_of(what))
        {
            fleet<Backend> net;
            open_subject_and_other(net);
            net.handler.trigger = callback::on_data;
            net.handler.subject = subject_address;
            net.handler.other = other_address;
            net.handler.what = what;
            net.client(subject_address).send(as_bytes(std::string("ping")), net.time.now());
            net.pump();
            BOOST_TEST(net.handler.data.size() == 1u);
            check_outcome(net, what, true, true);
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(on_close_after_the_peer_closed_may_send_or_close_on_any_peer, Backend, all_backends)
{
    for (const auto what : every_action) {
        BOOST_TEST_CONTEXT(name_of(what))
        {
            fleet<Backend> net;
            open_subject_and_other(net);
            net.handler.trigger = callback::on_close;
            net.handler.subject = subject_address;
            net.handler.other = other_address;
            net.handler.what = what;
            net.client(subject_address).close(net.time.now());
            net.pump();
            BOOST_TEST(net.handler.closes_of(subject_address) == 1u);
            BOOST_TEST((net.handler.closed.at(0).second.code == errc::peer_closed), net.handler.closed.at(0).second.what());
            check_outcome(net, what, false, true);
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(on_close_after_a_failed_handshake_may_send_or_close_on_any_peer, Backend, all_backends)
{
    for (const auto what : every_action) {
        BOOST_TEST_CONTEXT(name_of(what))
        {
            fleet<Backend> net;
            BOOST_TEST_REQUIRE(net.connect(other_address).is_open());
            net.handler.trigger = callback::on_close;
            net.handler.subject = subject_address;
            net.handler.other = other_address;
            net.handler.what = what;
            // A client that trusts another CA rejects the server's
            // certificate with a fatal alert; the server's side fails.
            BOOST_TEST(!net.connect(subject_address, client_config("other-ca.pem")).is_open());
            net.run_until([&] { return net.handler.fired; }, 5s);
            BOOST_TEST_REQUIRE(net.handler.closes_of(subject_address) == 1u);
            BOOST_TEST(net.srv().counters().sessions_failed == 1u);
            check_outcome(net, what, false, true);
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(on_close_at_idle_expiry_may_send_or_close_on_any_peer, Backend, all_backends)
{
    // The idle timeout in real time for stacks on the wall clock: short, but
    // far longer than an in-memory handshake.
    constexpr auto idle = 400ms;
    for (const auto what : every_action) {
        BOOST_TEST_CONTEXT(name_of(what))
        {
            server_settings settings;
            settings.idle_timeout = idle;
            fleet<Backend> net(settings);
            open_subject_and_other(net);
            net.handler.trigger = callback::on_close;
            net.handler.subject = subject_address;
            net.handler.other = other_address;
            net.handler.what = what;
            // Half-way, the other peer speaks: it outlives the subject.
            net.run_until([] { return false; }, idle / 2);
            net.client(other_address).send(as_bytes(std::string("still here")), net.time.now());
            net.run_until([&] { return net.handler.fired; }, 2 * idle);
            BOOST_TEST_REQUIRE(net.handler.closes_of(subject_address) == 1u);
            BOOST_TEST((net.handler.closed.at(0).second.code == errc::idle_timeout), net.handler.closed.at(0).second.what());
            // Closed from the handler, the other ends in this on_timeout
            // already when it runs on the same clock reading.
            if (what != action::close_other) BOOST_TEST(net.srv().find(other_address) != nullptr);
            check_outcome(net, what, false, true);
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(on_close_at_replacement_by_a_new_handshake_may_send_or_close_on_any_peer, Backend,
                              all_backends)
{
    constexpr auto idle = 400ms;
    for (const auto what : every_action) {
        BOOST_TEST_CONTEXT(name_of(what))
        {
            server_settings settings;
            settings.idle_timeout = idle;
            fleet<Backend> net(settings);
            open_subject_and_other(net);
            net.handler.trigger = callback::on_close;
            net.handler.subject = subject_address;
            net.handler.other = other_address;
            net.handler.what = what;
            // The subject's client restarts on the same address and port
            // (RFC 6347 §4.2.8): the old association ends, a new one opens,
            // and what the handler did to the old one leaves the new alone.
            BOOST_TEST(net.connect(subject_address).is_open(), net.client(subject_address).last_failure().what());
            BOOST_TEST(net.handler.closes_of(subject_address) == 1u);
            BOOST_TEST(net.srv().counters().sessions_created == 3u);
            const auto* replaced = net.srv().find(subject_address);
            BOOST_TEST_REQUIRE(replaced != nullptr);
            BOOST_TEST(replaced->is_open());
            // The new association is open: send/close on "self" hit the old
            // one, which was ending, so they report not_open. Then every
            // association idles out: a timer left behind by the old one
            // would fire on freed memory.
            check_outcome(net, what, false, true, [&] {
                net.run_until([&] { return net.srv().session_count() == 0; }, 3 * idle);
                BOOST_TEST(net.srv().session_count() == 0u);
            });
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(on_close_at_shutdown_may_send_or_close_on_any_peer, Backend, all_backends)
{
    for (const auto what : every_action) {
        BOOST_TEST_CONTEXT(name_of(what))
        {
            fleet<Backend> net;
            open_subject_and_other(net);
            net.handler.trigger = callback::on_close;
            net.handler.subject = subject_address;
            net.handler.other = other_address;
            net.handler.what = what;
            net.shutdown();
            auto& h = net.handler;
            BOOST_TEST_REQUIRE(h.fired);
            BOOST_TEST(net.srv().session_count() == 0u);
            BOOST_TEST(!net.srv().next_deadline());
            BOOST_TEST(h.closes_of(subject_address) == 1u);
            BOOST_TEST(h.closes_of(other_address) == 1u);
            // The other peer was either still open (then the message or the
            // close reached it before the shutdown's close_notify) or
            // already gone (then not_open): never anything in between.
            const bool other_was_open = !h.result;
            if (what == action::send_to_other)
                BOOST_TEST(net.got(other_address, from_handler) == other_was_open, h.result.message());
            if (what == action::send_to_self || what == action::close_self)
                BOOST_TEST((h.result == errc::not_open), h.result.message());
            BOOST_TEST((net.client(subject_address).state() == endpoint_state::closed));
            BOOST_TEST((net.client(other_address).state() == endpoint_state::closed));
            BOOST_TEST(h.closed.size() == net.srv().counters().sessions_created);
            BOOST_TEST(net.connect(third_address).is_open());
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(on_refused_may_send_or_close_on_any_peer, Backend, all_backends)
{
    for (const auto what : every_action) {
        BOOST_TEST_CONTEXT(name_of(what))
        {
            server_settings settings;
            settings.max_sessions = 2;
            fleet<Backend> net(settings);
            BOOST_TEST_REQUIRE(net.connect(other_address).is_open());
            BOOST_TEST_REQUIRE(net.connect(third_address).is_open());
            net.handler.trigger = callback::on_refused;
            net.handler.subject = subject_address;
            net.handler.other = other_address;
            net.handler.what = what;
            // The table is full: the subject is refused, and the handler
            // acts from on_refused.
            BOOST_TEST(!net.connect(subject_address).is_open());
            BOOST_TEST_REQUIRE(net.handler.refused.size() == 1u);
            BOOST_TEST(net.handler.refused[0] == subject_address);
            BOOST_TEST(net.srv().counters().sessions_refused == 1u);
            BOOST_TEST(net.srv().find(subject_address) == nullptr);
            check_outcome(net, what, false, true);
        }
    }
}

// A handler that calls back into the dispatching functions is refused at
// once, and the server stays usable.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_handler_calling_on_timeout_is_refused_loudly, Backend, all_backends)
{
    struct reentrant {
        server<Backend>* srv;
        time_point now;
        bool threw = false;
        void on_open(const peer_address&)
        {
            try {
                srv->on_timeout(now);
            } catch (const std::logic_error&) {
                threw = true;
            }
        }
    };
    failure f;
    auto s = server<Backend>::create(server_config(), {}, f);
    BOOST_REQUIRE_MESSAGE(s, f.what());
    auto e = endpoint<Backend>::connect(client_config(), clock::now(), f);
    BOOST_REQUIRE_MESSAGE(e, f.what());
    reentrant h{&*s, clock::now()};
    for (int round = 0; round < 20 && !e->is_open(); ++round) {
        e->drain([&](std::span<const std::byte> d) { s->receive(subject_address, d, clock::now(), h); });
        s->drain([&](const peer_address&, std::span<const std::byte> d) { e->receive(d, clock::now()); });
    }
    BOOST_TEST(e->is_open());
    BOOST_TEST(h.threw);
    BOOST_TEST(s->session_count() == 1u);
    s->shutdown(clock::now());
    BOOST_TEST(s->session_count() == 0u);
}
