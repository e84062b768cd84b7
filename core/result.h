#pragma once
// A small value-or-error type: functions that can fail on input a person or a
// peer controls return Result<T> instead of throwing (see STYLE.md, Errors).

#include <string>
#include <utility>
#include <variant>

namespace shoal {

/// An error with a message a person can act on.
struct Error {
  std::string message;
};

/// Either a T or an Error. Check ok() before value().
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  const T& value() const& { return std::get<0>(v_); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& operator*() const& { return value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

/// Result of an operation that returns nothing on success.
struct Ok {};
using Status = Result<Ok>;

}  // namespace shoal
