#pragma once
// The cluster keys: a keyring of HMAC keys by id, loaded from the key file, and the
// functions that create and rotate that file (shoalctl keygen and friends).
//
// Key file format (text, one key per line):
//
//   # comment
//   <id> <64 hex digits> [primary]
//
// Ids are 1..65535 and unique; keys are 32 bytes. At most one line says `primary`; when none
// does, the first key in the file is the primary. Blank lines and lines starting with `#`
// are ignored. The file must be readable by its owner only (checkKeyFileSafety()).
//
// Rotation without downtime: add a new key to every node's file (addKey, not primary) and
// reload; once all nodes accept it, make it primary everywhere (setPrimaryKey); once all
// nodes send with it, remove the old key (removeKey). Packets are sent with the primary and
// accepted with any installed key.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace shoal {

/// Size of every cluster key in bytes (HMAC-SHA256 key of one hash block's worth of entropy).
inline constexpr std::size_t kKeySize = 32;
/// Largest key id (ids are 1..kMaxKeyId).
inline constexpr uint32_t kMaxKeyId = 65535;

/// One secret key and its id. The secret bytes are wiped (OPENSSL_cleanse) when the object is
/// destroyed or overwritten, and a moved-from key is wiped too.
class Key {
 public:
  /// `id` must be 1..kMaxKeyId (the keyring functions check it).
  Key(uint32_t id, const std::array<uint8_t, kKeySize>& secret);
  Key(const Key& other);
  Key(Key&& other) noexcept;
  Key& operator=(const Key& other);
  Key& operator=(Key&& other) noexcept;
  ~Key();

  /// A fresh key with `id` and 32 bytes from OpenSSL's RAND_bytes; an error if the random
  /// generator fails (e.g. not seeded).
  static Result<Key> generate(uint32_t id);

  uint32_t id() const { return id_; }
  /// The secret bytes. Do not copy them anywhere that outlives the key.
  const std::array<uint8_t, kKeySize>& secret() const { return secret_; }
  /// Names this key's contents within the process: copies share it, and no two keys with
  /// different contents ever have the same serial (a moved-from key gets a new one). Lets
  /// per-key caches recognise a key without comparing secrets.
  uint64_t serial() const { return serial_; }

 private:
  uint32_t id_;
  std::array<uint8_t, kKeySize> secret_;
  uint64_t serial_;
};

/// The installed keys: one primary that seals outgoing packets, any of which opens incoming
/// ones. Never empty. Immutable once built; a reload builds a new keyring.
class Keyring {
 public:
  /// Reads the key file at `path`: refuses it if checkKeyFileSafety() does, and reports the
  /// first malformed line as "PATH:LINE: what was expected". Never includes key material in a
  /// message.
  static Result<Keyring> load(const std::string& path);
  /// Parses key file text; `source` names it in messages. Does no file-safety check (used by
  /// load() and tests).
  static Result<Keyring> parse(std::string_view text, const std::string& source);
  /// Builds a keyring from keys in hand: ids must be 1..kMaxKeyId and unique, `keys` non-empty
  /// and `primary_id` one of them.
  static Result<Keyring> fromKeys(std::vector<Key> keys, uint32_t primary_id);

  /// The key that seals outgoing packets.
  const Key& primary() const { return keys_[primary_]; }
  /// The key with `id`, or nullptr if none is installed.
  const Key* find(uint32_t id) const;
  /// Installed key ids in file order.
  std::vector<uint32_t> ids() const;
  std::size_t size() const { return keys_.size(); }

 private:
  Keyring(std::vector<Key> keys, std::size_t primary);

  std::vector<Key> keys_;
  std::size_t primary_;
};

/// Creates a new key file at `path` holding one random key, id 1, marked primary. The file is
/// created with O_EXCL and mode 0600 (never readable by group or others, whatever the umask)
/// and synced to disk. Refuses to overwrite an existing file or follow a symlink.
Status createKeyFile(const std::string& path);

/// Adds a random key to the key file at `path` (which must pass checkKeyFileSafety()) and
/// returns its id: one more than the largest id in the file, or the smallest free id if that
/// is taken. With `make_primary` the new key becomes the primary. The file is rewritten
/// atomically (temporary file in the same folder, mode 0600, fsync, rename); comments and
/// blank lines are kept.
Result<uint32_t> addKey(const std::string& path, bool make_primary);

/// Marks key `id` as the primary of the key file at `path` (atomic rewrite as in addKey).
/// An error if no key has that id.
Status setPrimaryKey(const std::string& path, uint32_t id);

/// Removes key `id` from the key file at `path` (atomic rewrite as in addKey). Refuses to
/// remove the primary key (make another primary first) and reports unknown ids.
Status removeKey(const std::string& path, uint32_t id);

}  // namespace shoal
