#include "core/keyring.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "core/key_file.h"

namespace shoal {

namespace {

// A key file larger than this is not a key file; refuse it before reading it all.
constexpr off_t kMaxKeyFileBytes = 1 << 20;

constexpr std::string_view kFileHeader =
    "# shoal cluster keys: one \"<id> <64 hex digits> [primary]\" per line.\n"
    "# Every node of the cluster needs the same keys. Keep this file mode 0600.\n";

// A std::string whose contents are wiped when it dies: file text and hex renderings hold
// key material. It is neither copied nor moved (a moved-from short string can keep its bytes),
// which is why the helpers below fill one passed in rather than return it.
class SecretString {
 public:
  SecretString() = default;
  SecretString(const SecretString&) = delete;
  SecretString& operator=(const SecretString&) = delete;
  ~SecretString() { wipe(); }
  void wipe() {
    if (!text_.empty()) {
      OPENSSL_cleanse(text_.data(), text_.size());
    }
    text_.clear();
  }
  std::string& text() { return text_; }
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

std::string errnoText() {
  return std::strerror(errno);
}

// One line of a key file. Comment and blank lines keep their text so rewrites preserve
// them; key lines keep only the parsed key (the hex is not kept around).
struct Line {
  std::string text;
  std::optional<Key> key;
  std::size_t number = 0;
};

struct KeyFile {
  std::vector<Line> lines;
  std::size_t primary_line = 0;  // index into lines of the primary key
};

std::string_view trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r");
  if (first == std::string_view::npos) {
    return {};
  }
  const auto last = s.find_last_not_of(" \t\r");
  return s.substr(first, last - first + 1);
}

std::vector<std::string_view> splitWords(std::string_view s) {
  std::vector<std::string_view> words;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) {
      ++i;
    }
    const std::size_t start = i;
    while (i < s.size() && s[i] != ' ' && s[i] != '\t') {
      ++i;
    }
    if (i > start) {
      words.push_back(s.substr(start, i - start));
    }
  }
  return words;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

std::optional<uint32_t> parseKeyId(std::string_view word) {
  if (word.empty() || word.size() > 5) {
    return std::nullopt;
  }
  uint32_t id = 0;
  for (char c : word) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    id = id * 10 + static_cast<uint32_t>(c - '0');
  }
  if (id < 1 || id > kMaxKeyId) {
    return std::nullopt;
  }
  return id;
}

Result<KeyFile> parseKeyFile(std::string_view text, const std::string& source) {
  KeyFile file;
  std::optional<std::size_t> marked_primary;
  std::size_t number = 0;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const std::size_t end = std::min(text.find('\n', pos), text.size());
    const std::string_view raw = text.substr(pos, end - pos);
    pos = end + 1;
    ++number;
    if (end == text.size() && raw.empty()) {
      break;  // nothing after the last newline
    }
    const std::string where = source + ":" + std::to_string(number) + ": ";
    const std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#') {
      file.lines.push_back(Line{std::string(raw), std::nullopt, number});
      continue;
    }
    const auto words = splitWords(line);
    if (words.size() < 2 || words.size() > 3) {
      return Error{where + "expected \"<id> <64 hex digits> [primary]\", found " +
                   std::to_string(words.size()) + " word" + (words.size() == 1 ? "" : "s")};
    }
    const auto id = parseKeyId(words[0]);
    if (!id) {
      return Error{where + "key id \"" + std::string(words[0]) + "\" is not a number from 1 to " +
                   std::to_string(kMaxKeyId)};
    }
    for (const Line& earlier : file.lines) {
      if (earlier.key && earlier.key->id() == *id) {
        return Error{where + "key id " + std::to_string(*id) + " is also used on line " +
                     std::to_string(earlier.number) + "; ids must be unique"};
      }
    }
    const std::string_view hex = words[1];
    if (hex.size() != 2 * kKeySize) {
      return Error{where + "key " + std::to_string(*id) + " must be " +
                   std::to_string(2 * kKeySize) + " hexadecimal digits (" +
                   std::to_string(kKeySize) + " bytes), found " + std::to_string(hex.size()) +
                   " characters"};
    }
    std::array<uint8_t, kKeySize> secret{};
    bool hex_ok = true;
    for (std::size_t i = 0; i < kKeySize; ++i) {
      const int hi = hexValue(hex[2 * i]);
      const int lo = hexValue(hex[2 * i + 1]);
      if (hi < 0 || lo < 0) {
        hex_ok = false;
        break;
      }
      secret[i] = static_cast<uint8_t>(hi * 16 + lo);
    }
    Key key(*id, secret);
    OPENSSL_cleanse(secret.data(), secret.size());
    if (!hex_ok) {
      return Error{where + "key " + std::to_string(*id) +
                   " contains a character that is not a hexadecimal digit"};
    }
    if (words.size() == 3) {
      if (words[2] != "primary") {
        return Error{where + "unexpected \"" + std::string(words[2]) +
                     "\" after the key; the only word allowed there is \"primary\""};
      }
      if (marked_primary) {
        return Error{where + "a second key is marked primary (the first is on line " +
                     std::to_string(file.lines[*marked_primary].number) + "); mark exactly one"};
      }
      marked_primary = file.lines.size();
    }
    file.lines.push_back(Line{{}, std::move(key), number});
  }
  if (marked_primary) {
    file.primary_line = *marked_primary;
    return file;
  }
  // No key marked: the first key is the primary, so a one-key file needs no marker.
  for (std::size_t i = 0; i < file.lines.size(); ++i) {
    if (file.lines[i].key) {
      file.primary_line = i;
      return file;
    }
  }
  return Error{source + " holds no keys; expected lines \"<id> <64 hex digits> [primary]\""};
}

Result<Keyring> keyringOf(const KeyFile& file) {
  std::vector<Key> keys;
  for (const Line& line : file.lines) {
    if (line.key) {
      keys.push_back(*line.key);
    }
  }
  return Keyring::fromKeys(std::move(keys), file.lines[file.primary_line].key->id());
}

Status readSecretFile(const std::string& path, SecretString& out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Error{"key file " + path + " cannot be opened: " + errnoText()};
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const std::string why = errnoText();
    ::close(fd);
    return Error{"key file " + path + " cannot be examined: " + why};
  }
  // Checked again on the open file: the path may have been replaced since the safety check.
  if (!S_ISREG(st.st_mode) || (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    ::close(fd);
    return Error{"key file " + path +
                 " changed while being read and is no longer a private regular file; run: "
                 "chmod 600 " +
                 path};
  }
  if (st.st_size > kMaxKeyFileBytes) {
    ::close(fd);
    return Error{"key file " + path + " is larger than " + std::to_string(kMaxKeyFileBytes) +
                 " bytes; it is not a shoal key file"};
  }
  // Reserve once so the secret text is never reallocated (a reallocation would leave an
  // unwiped copy behind).
  out.text().reserve(static_cast<std::size_t>(st.st_size) + 1);
  char buffer[4096];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      const std::string why = errnoText();
      ::close(fd);
      OPENSSL_cleanse(buffer, sizeof buffer);
      return Error{"key file " + path + " cannot be read: " + why};
    }
    if (n == 0) {
      break;
    }
    out.text().append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  OPENSSL_cleanse(buffer, sizeof buffer);
  return Ok{};
}

Result<KeyFile> loadKeyFile(const std::string& path) {
  if (auto safe = checkKeyFileSafety(path); !safe) {
    return safe.error();
  }
  SecretString text;
  if (auto read = readSecretFile(path, text); !read) {
    return read.error();
  }
  return parseKeyFile(text.text(), path);
}

void appendKeyLine(std::string& out, const Key& key, bool primary) {
  static constexpr char kDigits[] = "0123456789abcdef";
  out += std::to_string(key.id());
  out += ' ';
  for (uint8_t byte : key.secret()) {
    out += kDigits[byte >> 4];
    out += kDigits[byte & 0x0f];
  }
  if (primary) {
    out += " primary";
  }
  out += '\n';
}

std::size_t renderedSize(const KeyFile& file) {
  std::size_t size = 0;
  for (const Line& line : file.lines) {
    size += line.key ? 6 + 2 * kKeySize + 10 : line.text.size() + 1;
  }
  return size;
}

void render(const KeyFile& file, SecretString& out) {
  out.text().reserve(renderedSize(file));
  for (std::size_t i = 0; i < file.lines.size(); ++i) {
    const Line& line = file.lines[i];
    if (line.key) {
      appendKeyLine(out.text(), *line.key, i == file.primary_line);
    } else {
      out.text() += line.text;
      out.text() += '\n';
    }
  }
}

Status writeAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Error{"cannot write " + path + ": " + errnoText()};
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  if (::fsync(fd) != 0) {
    return Error{"cannot sync " + path + " to disk: " + errnoText()};
  }
  return Ok{};
}

std::string folderOf(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) {
    return ".";
  }
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Makes a rename or creation durable: the folder entry must reach the disk too.
void syncFolder(const std::string& path) {
  const int fd = ::open(folderOf(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// Replaces the file at `path` with `content` so that a reader sees either the old or the new
// file, never a partial one, and the key is never readable by group or others.
Status replaceFileAtomically(const std::string& path, std::string_view content) {
  std::string temp = path + ".tmp-XXXXXX";
  const int fd = ::mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) {
    return Error{"cannot create a temporary file next to " + path + ": " + errnoText()};
  }
  Status status = Ok{};
  if (::fchmod(fd, S_IRUSR | S_IWUSR) != 0) {
    status = Error{"cannot set mode 0600 on " + temp + ": " + errnoText()};
  } else {
    status = writeAll(fd, content, temp);
  }
  if (::close(fd) != 0 && status) {
    status = Error{"cannot write " + temp + ": " + errnoText()};
  }
  if (status && ::rename(temp.c_str(), path.c_str()) != 0) {
    status = Error{"cannot replace " + path + ": " + errnoText()};
  }
  if (!status) {
    ::unlink(temp.c_str());
    return status;
  }
  syncFolder(path);
  return Ok{};
}

Status rewrite(const std::string& path, const KeyFile& file) {
  SecretString content;
  render(file, content);
  return replaceFileAtomically(path, content.text());
}

std::optional<std::size_t> lineOfKey(const KeyFile& file, uint32_t id) {
  for (std::size_t i = 0; i < file.lines.size(); ++i) {
    if (file.lines[i].key && file.lines[i].key->id() == id) {
      return i;
    }
  }
  return std::nullopt;
}

}  // namespace

namespace {

// Serials start at 1 and are never reused within a process.
uint64_t nextKeySerial() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

Key::Key(uint32_t id, const std::array<uint8_t, kKeySize>& secret)
    : id_(id), secret_(secret), serial_(nextKeySerial()) {}

Key::Key(const Key& other) = default;

Key::Key(Key&& other) noexcept : id_(other.id_), secret_(other.secret_), serial_(other.serial_) {
  OPENSSL_cleanse(other.secret_.data(), other.secret_.size());
  other.serial_ = nextKeySerial();  // its contents changed: no longer the same key
}

Key& Key::operator=(const Key& other) {
  if (this != &other) {
    id_ = other.id_;
    secret_ = other.secret_;
    serial_ = other.serial_;
  }
  return *this;
}

Key& Key::operator=(Key&& other) noexcept {
  if (this != &other) {
    id_ = other.id_;
    secret_ = other.secret_;
    serial_ = other.serial_;
    OPENSSL_cleanse(other.secret_.data(), other.secret_.size());
    other.serial_ = nextKeySerial();
  }
  return *this;
}

Key::~Key() {
  OPENSSL_cleanse(secret_.data(), secret_.size());
}

Result<Key> Key::generate(uint32_t id) {
  std::array<uint8_t, kKeySize> secret{};
  if (RAND_bytes(secret.data(), static_cast<int>(secret.size())) != 1) {
    return Error{"cannot generate a random key: OpenSSL's random generator failed (" +
                 std::to_string(ERR_get_error()) + ")"};
  }
  Key key(id, secret);
  OPENSSL_cleanse(secret.data(), secret.size());
  return key;
}

Keyring::Keyring(std::vector<Key> keys, std::size_t primary)
    : keys_(std::move(keys)), primary_(primary) {}

Result<Keyring> Keyring::load(const std::string& path) {
  auto file = loadKeyFile(path);
  if (!file) {
    return file.error();
  }
  return keyringOf(*file);
}

Result<Keyring> Keyring::parse(std::string_view text, const std::string& source) {
  auto file = parseKeyFile(text, source);
  if (!file) {
    return file.error();
  }
  return keyringOf(*file);
}

Result<Keyring> Keyring::fromKeys(std::vector<Key> keys, uint32_t primary_id) {
  if (keys.empty()) {
    return Error{"a keyring needs at least one key"};
  }
  std::optional<std::size_t> primary;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const uint32_t id = keys[i].id();
    if (id < 1 || id > kMaxKeyId) {
      return Error{"key id " + std::to_string(id) + " is not from 1 to " +
                   std::to_string(kMaxKeyId)};
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (keys[j].id() == id) {
        return Error{"key id " + std::to_string(id) + " appears twice"};
      }
    }
    if (id == primary_id) {
      primary = i;
    }
  }
  if (!primary) {
    return Error{"primary key id " + std::to_string(primary_id) + " is not in the keyring"};
  }
  return Keyring(std::move(keys), *primary);
}

const Key* Keyring::find(uint32_t id) const {
  for (const Key& key : keys_) {
    if (key.id() == id) {
      return &key;
    }
  }
  return nullptr;
}

std::vector<uint32_t> Keyring::ids() const {
  std::vector<uint32_t> ids;
  ids.reserve(keys_.size());
  for (const Key& key : keys_) {
    ids.push_back(key.id());
  }
  return ids;
}

Status createKeyFile(const std::string& path) {
  auto key = Key::generate(1);
  if (!key) {
    return key.error();
  }
  const int fd =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, S_IRUSR | S_IWUSR);
  if (fd < 0) {
    if (errno == EEXIST) {
      return Error{"key file " + path +
                   " already exists; refusing to overwrite it (its keys may be in use: add a "
                   "key to it to rotate, or remove it first)"};
    }
    return Error{"cannot create key file " + path + ": " + errnoText()};
  }
  SecretString content;
  content.text().reserve(kFileHeader.size() + 6 + 2 * kKeySize + 10);
  content.text() += kFileHeader;
  appendKeyLine(content.text(), *key, true);
  Status status = Ok{};
  // The umask can only remove bits, but an explicit fchmod states the intent.
  if (::fchmod(fd, S_IRUSR | S_IWUSR) != 0) {
    status = Error{"cannot set mode 0600 on " + path + ": " + errnoText()};
  } else {
    status = writeAll(fd, content.text(), path);
  }
  if (::close(fd) != 0 && status) {
    status = Error{"cannot write " + path + ": " + errnoText()};
  }
  if (!status) {
    ::unlink(path.c_str());
    return status;
  }
  syncFolder(path);
  return Ok{};
}

Result<uint32_t> addKey(const std::string& path, bool make_primary) {
  auto file = loadKeyFile(path);
  if (!file) {
    return file.error();
  }
  uint32_t largest = 0;
  for (const Line& line : file->lines) {
    if (line.key) {
      largest = std::max(largest, line.key->id());
    }
  }
  uint32_t id = largest + 1;
  if (id > kMaxKeyId) {
    id = 0;
    for (uint32_t candidate = 1; candidate <= kMaxKeyId; ++candidate) {
      if (!lineOfKey(*file, candidate)) {
        id = candidate;
        break;
      }
    }
    if (id == 0) {
      return Error{"key file " + path + " already holds " + std::to_string(kMaxKeyId) +
                   " keys; remove old ones first"};
    }
  }
  auto key = Key::generate(id);
  if (!key) {
    return key.error();
  }
  file->lines.push_back(Line{{}, std::move(*key), 0});
  if (make_primary) {
    file->primary_line = file->lines.size() - 1;
  }
  if (auto written = rewrite(path, *file); !written) {
    return written.error();
  }
  return id;
}

Status setPrimaryKey(const std::string& path, uint32_t id) {
  auto file = loadKeyFile(path);
  if (!file) {
    return file.error();
  }
  const auto line = lineOfKey(*file, id);
  if (!line) {
    return Error{"key file " + path + " has no key with id " + std::to_string(id)};
  }
  file->primary_line = *line;
  return rewrite(path, *file);
}

Status removeKey(const std::string& path, uint32_t id) {
  auto file = loadKeyFile(path);
  if (!file) {
    return file.error();
  }
  const auto line = lineOfKey(*file, id);
  if (!line) {
    return Error{"key file " + path + " has no key with id " + std::to_string(id)};
  }
  if (*line == file->primary_line) {
    return Error{"key " + std::to_string(id) + " is the primary key of " + path +
                 "; make another key primary first (nodes still send with it)"};
  }
  file->lines.erase(file->lines.begin() + static_cast<std::ptrdiff_t>(*line));
  if (file->primary_line > *line) {
    --file->primary_line;
  }
  return rewrite(path, *file);
}

}  // namespace shoal
