// SPDX-License-Identifier: MIT
// Which Asio the adapter runs on, and the one piece of machinery its
// operations share: a completion handler kept until its operation ends.
//
// Standalone Asio by default; define DTLSPP_ASIO_BOOST to use Boost.Asio.
// Completion handlers always take std::error_code. Standalone Asio's
// error_code is std::error_code, so use_awaitable and use_future throw
// std::system_error on an error. Boost.Asio's is boost::system::error_code:
// there a std::error_code is handed over as a value (the result of co_await
// or of the future), not thrown.
#pragma once

#include <dtlspp/version.hpp>

#if defined(DTLSPP_ASIO_BOOST)
// Boost 1.74's asio/awaitable.hpp uses std::exchange without including
// <utility>, which breaks a C++20 build that includes it first.
#include <utility>
#include <boost/asio.hpp>
#else
#include <asio.hpp>
#endif

#include <memory>
#include <system_error>
#include <type_traits>
#include <utility>

namespace dtlspp::detail {

#if defined(DTLSPP_ASIO_BOOST)
namespace net = ::boost::asio;
using net_error_code = ::boost::system::error_code;
#else
namespace net = ::asio;
using net_error_code = ::asio::error_code;
#endif

// An operation's error as the adapter reports it.
inline std::error_code to_std_error(const net_error_code& ec) noexcept
{
    return static_cast<std::error_code>(ec);
}

inline bool is_aborted(const net_error_code& ec) noexcept
{
    return ec == net::error::operation_aborted;
}

// What an operation cancelled by a close or a destruction completes with.
inline std::error_code aborted_error() noexcept
{
    return to_std_error(net::error::make_error_code(net::error::operation_aborted));
}

inline bool would_block(const net_error_code& ec) noexcept
{
    return ec == net::error::would_block || ec == net::error::try_again;
}

// A completion handler of any type, kept (move-only, type-erased) while its
// operation waits. Completing it posts the handler to its associated
// executor, never runs it inside the call that completes it, and the handler
// holds that executor's work (as every Asio operation does) until then.
// Asio 1.22 has no any_completion_handler, hence this.
template <class... Args>
class stored_handler {
public:
    stored_handler() = default;

    template <class Handler>
    stored_handler(Handler&& handler, const net::any_io_executor& fallback)
        : impl_(std::make_unique<model<std::decay_t<Handler>>>(std::forward<Handler>(handler), fallback))
    {
    }

    explicit operator bool() const noexcept { return impl_ != nullptr; }

    // Posts the handler with `args`; a stored_handler completes once.
    void complete(Args... args)
    {
        auto impl = std::move(impl_);
        if (impl) impl->complete(std::move(args)...);
    }

private:
    struct base {
        virtual ~base() = default;
        virtual void complete(Args... args) = 0;
    };

    template <class Handler>
    struct model final : base {
        using executor_type = net::associated_executor_t<Handler, net::any_io_executor>;

        model(Handler&& h, const net::any_io_executor& fallback)
            : work(net::get_associated_executor(h, fallback)), handler(std::move(h))
        {
        }

        void complete(Args... args) override
        {
            auto executor = work.get_executor();
            net::post(executor, [h = std::move(handler), ... a = std::move(args)]() mutable { std::move(h)(std::move(a)...); });
            work.reset();
        }

        net::executor_work_guard<executor_type> work;
        Handler handler;
    };

    std::unique_ptr<base> impl_;
};

} // namespace dtlspp::detail
