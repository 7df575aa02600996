// SPDX-License-Identifier: MIT
// dtlspp::asio_server<Backend>: many DTLS associations on one Asio UDP
// socket, driven by the sans-I/O dtlspp::server<Backend>.
//
// async_run(handler, token) serves until stop(): one receive loop on the
// socket, one steady_timer at the server's next deadline, sends as they are
// queued. The handler is server<Backend>'s (server.hpp lists the callbacks:
// on_open, on_data, on_close, on_move), and its callbacks run on the thread
// that runs the executor, one at a time. As with udp_server, a callback
// sends and closes through the association_ref it gets; outside a callback,
// use asio_server::send and close.
//
// Like an Asio socket, an asio_server is not thread-safe, except stop():
// call it from the thread that runs its executor (or through a strand).
//
// Copies: a datagram is sent straight from the server's queue with a
// non-blocking send_to, without a copy. Only when the kernel's send buffer
// is full is it copied, with the ones queued after it, into a backlog that
// waits for the socket to become writable: the server reuses its queue on
// the next call, and an asynchronous send needs its bytes until it
// completes. Received datagrams are read in place, at most 64 at a time.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/asio/address.hpp>
#include <dtlspp/asio/detail/net.hpp>
#include <dtlspp/server.hpp>

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace dtlspp {

template <backend Backend>
class asio_server {
public:
    using executor_type = detail::net::any_io_executor;
    using server_type = server<Backend>;
    using udp = detail::net::ip::udp;

    // Makes the server and binds a UDP socket to `local` (port 0: any free
    // port, see local_endpoint()). nullopt with `f` set on: errc::config_invalid
    // and the other errors of server<Backend>::create and
    // Backend::make_context; a socket error (std::errc, e.g.
    // address_in_use) from opening or binding the socket.
    // @note Calls socket open, bind and non_blocking(true).
    static std::optional<asio_server> bind(const executor_type& executor, const config& c, const udp::endpoint& local,
                                           server_settings settings, failure& f)
    {
        auto core = server_type::create(c, settings, f);
        if (!core) return std::nullopt;
        auto s = std::make_shared<state>(executor, std::move(*core));
        detail::net_error_code ec;
        s->socket.open(local.protocol(), ec);
        if (!ec) s->socket.bind(local, ec);
        // Sends try the socket at once and fall back to waiting (above).
        if (!ec) s->socket.non_blocking(true, ec);
        if (ec) {
            const auto where = to_peer_address(local).value_or(peer_address{}).to_string();
            f = {detail::to_std_error(ec), "cannot bind a UDP socket to " + where + ": " + ec.message()};
            return std::nullopt;
        }
        return asio_server(std::move(s));
    }

    template <class ExecutionContext>
        requires std::is_convertible_v<ExecutionContext&, detail::net::execution_context&>
    static std::optional<asio_server> bind(ExecutionContext& context, const config& c, const udp::endpoint& local,
                                           server_settings settings, failure& f)
    {
        return bind(executor_type(context.get_executor()), c, local, settings, f);
    }

    asio_server(asio_server&&) noexcept = default;
    asio_server& operator=(asio_server&& other) noexcept
    {
        if (this != &other) {
            if (state_) state_->abandon();
            state_ = std::move(other.state_);
        }
        return *this;
    }
    // Closes the socket; a run in progress completes with operation_aborted
    // and no on_close is called (stop() says goodbye to the peers).
    ~asio_server()
    {
        if (state_) state_->abandon();
    }

    executor_type get_executor() const { return state_->socket.get_executor(); }

    // Serves until stop(), calling `handler`, which must outlive the run.
    // Completes as void(std::error_code): clear after stop(); a socket error
    // that ends serving (errors one peer's ICMP causes do not);
    // std::errc::operation_in_progress while another run is in progress;
    // operation_aborted when the server is destroyed first. An exception
    // from a callback leaves the executor's run() and ends serving.
    // @note Calls async_receive_from, then receive_from until would_block
    // (at most 64 more), and send_to (async_wait when the buffer is full).
    template <class Handler, class Token>
    auto async_run(Handler& handler, Token&& token)
    {
        return detail::net::async_initiate<Token, void(std::error_code)>(
            [s = state_](auto completion, Handler* h) { s->start_run(std::move(completion), h); }, token, &handler);
    }

    // Ends the run: close_notify to every peer, on_close for each, then the
    // run completes. Safe from any thread and from inside a callback (it
    // is posted to the executor). Nothing happens while no run is in progress.
    void stop()
    {
        detail::net::post(state_->socket.get_executor(), [s = state_] { s->stop(); });
    }

    // As server<Backend>::send, and the datagram goes out at once. Errors:
    // errc::not_open (no open association with `peer`), message_too_large,
    // the association's failure.
    void send(const peer_address& peer, std::span<const std::byte> data, std::error_code& ec)
    {
        state_->core.send(peer, data, clock::now(), ec);
        state_->after_call();
    }

    // As server<Backend>::close. Errors: errc::not_open when `peer` has no
    // association, or it is ending already.
    void close(const peer_address& peer, std::error_code& ec)
    {
        state_->core.close(peer, clock::now(), ec);
        state_->after_call();
    }

    // The bound address; a default endpoint if the socket cannot say.
    udp::endpoint local_endpoint() const
    {
        detail::net_error_code ignored;
        return state_->socket.local_endpoint(ignored);
    }
    // The sans-I/O server: counters, find, session_count, set_trace.
    server_type& core() noexcept { return state_->core; }
    const server_type& core() const noexcept { return state_->core; }
    // Datagrams copied to the backlog because the send buffer was full, and
    // datagrams the socket refused (lost, as on the network).
    std::uint64_t sends_deferred() const noexcept { return state_->sends_deferred; }
    std::uint64_t send_errors() const noexcept { return state_->send_errors; }

private:
    struct state : std::enable_shared_from_this<state> {
        state(const executor_type& executor, server_type s)
            : socket(executor), timer(executor), core(std::move(s)), buffer(max_datagram_in)
        {
        }

        template <class Completion, class Handler>
        void start_run(Completion&& completion, Handler* handler)
        {
            detail::stored_handler<std::error_code> waiter(std::forward<Completion>(completion), socket.get_executor());
            if (run_waiter || abandoned) {
                waiter.complete(abandoned ? detail::aborted_error()
                                          : std::make_error_code(std::errc::operation_in_progress));
                return;
            }
            run_waiter = std::move(waiter);
            ++run_number;
            on_timer_due = [this, handler](time_point now) { core.on_timeout(now, *handler); };
            on_stop = [this, handler](time_point now) { core.shutdown(now, *handler); };
            receive_next(handler, run_number);
            arm_timer();
        }

        template <class Handler>
        void receive_next(Handler* handler, std::uint64_t run)
        {
            socket.async_receive_from(detail::net::buffer(buffer), sender,
                                      [self = this->shared_from_this(), handler, run](const detail::net_error_code& ec,
                                                                                       std::size_t n) {
                                          self->on_datagram(handler, run, ec, n);
                                      });
        }

        template <class Handler>
        void on_datagram(Handler* handler, std::uint64_t run, detail::net_error_code ec, std::size_t n)
        {
            if (abandoned || run != run_number || !run_waiter) return; // this run has ended
            // Then whatever else the kernel holds, without waiting.
            for (int more = 0;; ++more) {
                if (!ec) {
                    deliver(*handler, n);
                } else if (!detail::would_block(ec) && !is_one_peers_error(ec)) {
                    end_run(detail::to_std_error(ec));
                    return;
                }
                if (detail::would_block(ec) || more == 64 || !run_waiter) break;
                n = socket.receive_from(detail::net::buffer(buffer), sender, 0, ec);
            }
            after_call();
            if (run_waiter) receive_next(handler, run);
        }

        template <class Handler>
        void deliver(Handler& handler, std::size_t n)
        {
            const auto from = to_peer_address(sender);
            if (!from) return;
            const in_call_scope scope(in_core_call);
            core.receive(*from, std::span<const std::byte>(buffer.data(), n), clock::now(), handler);
        }

        // ICMP errors for one peer (an unconnected socket reports them on
        // Windows; Linux only with IP_RECVERR) and datagrams too long for
        // the buffer say nothing about the other peers: keep serving.
        static bool is_one_peers_error(const detail::net_error_code& ec)
        {
            namespace error = detail::net::error;
            return ec == error::connection_refused || ec == error::connection_reset || ec == error::host_unreachable ||
                   ec == error::network_unreachable || ec == error::message_size;
        }

        // After each call into the server: send what it queued, move the timer.
        void after_call()
        {
            if (in_core_call || abandoned) return; // the loop does it when the server returns
            core.drain_batch([&](std::span<const peer_address> peers, const datagram_queue& datagrams) {
                for (std::size_t i = 0; i < datagrams.size(); ++i) send_one(peers[i], datagrams[i]);
            });
            if (run_waiter) arm_timer();
        }

        void send_one(const peer_address& to, std::span<const std::byte> d)
        {
            if (backlog.empty()) {
                detail::net_error_code ec;
                socket.send_to(detail::net::buffer(d.data(), d.size()), to_udp_endpoint(to), 0, ec);
                if (!ec) return;
                if (!detail::would_block(ec)) {
                    ++send_errors;
                    return;
                }
            }
            // The one copy: the server reuses its queue once this returns.
            ++sends_deferred;
            backlog.push_back({to_udp_endpoint(to), std::vector<std::byte>(d.begin(), d.end())});
            wait_writable();
        }

        void wait_writable()
        {
            if (waiting_to_write) return;
            waiting_to_write = true;
            socket.async_wait(udp::socket::wait_write, [self = this->shared_from_this()](const detail::net_error_code& ec) {
                self->waiting_to_write = false;
                if (self->abandoned || ec) return;
                self->send_backlog();
            });
        }

        void send_backlog()
        {
            while (!backlog.empty()) {
                detail::net_error_code ec;
                auto& next = backlog.front();
                socket.send_to(detail::net::buffer(next.bytes), next.to, 0, ec);
                if (detail::would_block(ec)) {
                    wait_writable();
                    return;
                }
                if (ec) ++send_errors;
                backlog.pop_front();
            }
        }

        void arm_timer()
        {
            const auto due = core.next_deadline();
            if (!due) {
                if (timer_at) timer.cancel();
                timer_at.reset();
                return;
            }
            if (timer_at && *timer_at == *due) return;
            timer_at = due;
            timer.expires_at(*due);
            timer.async_wait([self = this->shared_from_this(), run = run_number](const detail::net_error_code& ec) {
                if (self->abandoned || detail::is_aborted(ec) || run != self->run_number || !self->run_waiter) return;
                self->timer_at.reset();
                {
                    const in_call_scope scope(self->in_core_call);
                    self->on_timer_due(clock::now());
                }
                self->after_call();
            });
        }

        void stop()
        {
            if (!run_waiter || abandoned) return;
            {
                const in_call_scope scope(in_core_call);
                on_stop(clock::now());
            }
            after_call(); // the close_notify alerts
            end_run({});
        }

        void end_run(std::error_code ec)
        {
            ++run_number; // the loop's handlers in flight find the run over
            on_timer_due = nullptr;
            on_stop = nullptr;
            // The receive in flight belongs to this run: the next run starts its own.
            detail::net_error_code ignored;
            socket.cancel(ignored);
            timer.cancel();
            timer_at.reset();
            run_waiter.complete(ec);
        }

        void abandon()
        {
            if (abandoned) return;
            run_waiter.complete(detail::aborted_error());
            abandoned = true;
            detail::net_error_code ignored;
            socket.close(ignored);
            timer.cancel();
        }

        // Marks a call into the server, during which nothing drains it.
        struct in_call_scope {
            explicit in_call_scope(bool& flag) : flag_(flag), was_(flag) { flag_ = true; }
            ~in_call_scope() { flag_ = was_; }
            in_call_scope(const in_call_scope&) = delete;
            in_call_scope& operator=(const in_call_scope&) = delete;
            bool& flag_;
            bool was_;
        };

        struct deferred_datagram {
            udp::endpoint to;
            std::vector<std::byte> bytes;
        };

        udp::socket socket;
        detail::net::steady_timer timer;
        server_type core;
        std::vector<std::byte> buffer; // one received datagram, the largest DTLS allows
        udp::endpoint sender;
        detail::stored_handler<std::error_code> run_waiter;
        std::uint64_t run_number = 0;
        std::function<void(time_point)> on_timer_due; // core.on_timeout with the run's handler
        std::function<void(time_point)> on_stop;      // core.shutdown with the run's handler
        std::optional<time_point> timer_at;
        std::deque<deferred_datagram> backlog;
        bool waiting_to_write = false;
        bool in_core_call = false;
        bool abandoned = false;
        std::uint64_t sends_deferred = 0;
        std::uint64_t send_errors = 0;
    };

    explicit asio_server(std::shared_ptr<state> s) : state_(std::move(s)) {}

    std::shared_ptr<state> state_;
};

} // namespace dtlspp
