#include "core/config_loader.h"

#include <openssl/evp.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <utility>

#include "core/key_file.h"
#include "core/timing_profile.h"

namespace shoal {

namespace {

// ---------------------------------------------------------------------------------------------
// A small YAML tree with positions. yaml-cpp's own Node keeps only the last of two equal keys
// and drops positions of map keys, so the loader builds its own tree from parser events: every
// key of every mapping is kept, in order, with its line and column.

struct YNode {
  enum class Kind : uint8_t { Null, Scalar, Sequence, Map };
  Kind kind = Kind::Null;
  int line = 1;  // 1-based
  int column = 1;
  std::string value;                                           // Scalar
  std::vector<const YNode*> items;                             // Sequence
  std::vector<std::pair<const YNode*, const YNode*>> entries;  // Map, in file order
  const YNode* pending_key = nullptr;                          // while a Map is being built
  bool open = false;                                           // a collection still being built
};

// A located problem before it gets the file name.
struct Problem {
  int line;
  int column;
  std::string field;
  std::string message;
};

int oneBased(int zero_based) {
  return zero_based < 0 ? 1 : zero_based + 1;
}

class TreeBuilder : public YAML::EventHandler {
 public:
  const YNode* root() const { return root_; }
  std::vector<Problem>& problems() { return problems_; }

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    YNode* n = make(YNode::Kind::Null, mark);
    remember(anchor, n);
    attach(n);
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end() || it->second->open) {
      // An alias inside the node it names would make the tree a cycle; nothing in a cluster
      // definition needs one.
      problems_.push_back({oneBased(mark.line), oneBased(mark.column), "",
                           "an alias may only name a complete node defined before it"});
      attach(make(YNode::Kind::Null, mark));
      return;
    }
    if (it->second->kind == YNode::Kind::Scalar || it->second->kind == YNode::Kind::Null) {
      // A copy located at the alias, so an error about the value (an address used twice)
      // points at the place that repeats it. Collections stay shared: copying them would let
      // a small file with many aliases grow without bound.
      YNode* copy = make(it->second->kind, mark);
      copy->value = it->second->value;
      attach(copy);
      return;
    }
    attach(it->second);
  }

  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                const std::string& value) override {
    YNode* n = make(YNode::Kind::Scalar, mark);
    n->value = value;
    remember(anchor, n);
    attach(n);
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    open(make(YNode::Kind::Sequence, mark), anchor);
  }
  void OnSequenceEnd() override { close(); }

  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    open(make(YNode::Kind::Map, mark), anchor);
  }
  void OnMapEnd() override { close(); }

 private:
  YNode* make(YNode::Kind kind, const YAML::Mark& mark) {
    arena_.push_back(std::make_unique<YNode>());
    YNode* n = arena_.back().get();
    n->kind = kind;
    n->line = oneBased(mark.line);
    n->column = oneBased(mark.column);
    return n;
  }

  void remember(YAML::anchor_t anchor, YNode* n) {
    if (anchor != YAML::NullAnchor) {
      anchors_[anchor] = n;
    }
  }

  void attach(const YNode* n) {
    if (stack_.empty()) {
      if (root_ == nullptr) {
        root_ = n;
      }
      return;
    }
    YNode* parent = stack_.back();
    if (parent->kind == YNode::Kind::Sequence) {
      parent->items.push_back(n);
    } else if (parent->pending_key == nullptr) {
      parent->pending_key = n;
    } else {
      parent->entries.emplace_back(parent->pending_key, n);
      parent->pending_key = nullptr;
    }
  }

  void open(YNode* n, YAML::anchor_t anchor) {
    remember(anchor, n);
    attach(n);
    n->open = true;
    stack_.push_back(n);
  }

  void close() {
    if (stack_.empty()) {
      return;
    }
    YNode* n = stack_.back();
    stack_.pop_back();
    if (n->pending_key != nullptr) {
      // A key without a value: yaml-cpp reports the value as null, but be safe.
      n->entries.emplace_back(n->pending_key, make(YNode::Kind::Null, YAML::Mark()));
      n->pending_key = nullptr;
    }
    n->open = false;
  }

  std::vector<std::unique_ptr<YNode>> arena_;
  std::vector<YNode*> stack_;
  std::map<YAML::anchor_t, YNode*> anchors_;
  const YNode* root_ = nullptr;
  std::vector<Problem> problems_;
};

// The document of `yaml` as a tree. Syntax errors become problems; the tree is then whatever
// was built before the error and is not validated further.
struct ParsedDocument {
  std::unique_ptr<TreeBuilder> builder;
  bool syntax_ok = false;
};

ParsedDocument parseYaml(std::string_view yaml) {
  ParsedDocument doc;
  doc.builder = std::make_unique<TreeBuilder>();
  std::istringstream in{std::string(yaml)};
  try {
    YAML::Parser parser(in);
    if (!parser.HandleNextDocument(*doc.builder)) {
      doc.builder->problems().push_back(
          {1, 1, "",
           "the file holds no YAML document; expected a mapping with cluster, "
           "key_file, services and nodes (see etc/cluster.yaml)"});
      return doc;
    }
    TreeBuilder second;
    if (parser.HandleNextDocument(second) && second.root() != nullptr) {
      doc.builder->problems().push_back(
          {second.root()->line, second.root()->column, "",
           "a second YAML document starts here; a cluster definition is one document (remove "
           "the '---' or the text after it)"});
      return doc;
    }
    doc.syntax_ok = true;
  } catch (const YAML::Exception& e) {
    doc.builder->problems().push_back(
        {oneBased(e.mark.line), oneBased(e.mark.column), "", "YAML syntax error: " + e.msg});
  }
  return doc;
}

// ---------------------------------------------------------------------------------------------
// Validation helpers.

const char* kindName(const YNode* n) {
  switch (n->kind) {
    case YNode::Kind::Null:
      return "nothing";
    case YNode::Kind::Scalar:
      return "a single value";
    case YNode::Kind::Sequence:
      return "a list";
    case YNode::Kind::Map:
      return "a mapping";
  }
  return "?";
}

std::string join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

std::string indexed(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

std::size_t editDistance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// Quotes a value for a message, cutting long or binary garbage short.
std::string quote(const std::string& s) {
  std::string out = "'";
  for (std::size_t i = 0; i < s.size() && i < 60; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  if (s.size() > 60) {
    out += "...";
  }
  return out + "'";
}

// Decimal or 0x-hex, no sign; nullopt on anything else or on overflow of 64 bits.
std::optional<uint64_t> parseUnsigned(const std::string& s) {
  std::size_t i = 0;
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    i = 2;
  }
  if (i >= s.size()) {
    return std::nullopt;
  }
  uint64_t v = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    int d = 0;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (base == 16 && c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (base == 16 && c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return std::nullopt;
    }
    if (v > (UINT64_MAX - static_cast<uint64_t>(d)) / static_cast<uint64_t>(base)) {
      return std::nullopt;
    }
    v = v * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
  }
  return v;
}

std::optional<double> parseNumber(const std::string& s) {
  if (s.empty() || s.size() > 64 || s.find('\0') != std::string::npos) {
    return std::nullopt;
  }
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || errno != 0 || !std::isfinite(v)) {
    return std::nullopt;
  }
  return v;
}

bool matchesName(const std::string& s, bool (*first)(char), bool (*rest)(char)) {
  if (s.empty() || !first(s[0])) {
    return false;
  }
  return std::all_of(s.begin() + 1, s.end(), rest);
}
bool isLowerAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
bool isLower(char c) {
  return c >= 'a' && c <= 'z';
}
bool isAlnum(char c) {
  return isLowerAlnum(c) || (c >= 'A' && c <= 'Z');
}
bool isClusterChar(char c) {
  return isLowerAlnum(c) || c == '-';
}
bool isServiceChar(char c) {
  return isLowerAlnum(c) || c == '-' || c == '_';
}
bool isNodeChar(char c) {
  return isAlnum(c) || c == '_' || c == '.' || c == '-';
}

// The kernel's rule for interface names (dev_valid_name): 1..15 bytes, not "." or "..", no
// '/', ':' or white space.
bool isValidInterfaceName(const std::string& s) {
  if (s.empty() || s.size() > 15 || s == "." || s == "..") {
    return false;
  }
  return std::none_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return c == '/' || c == ':' || u <= 0x20 || u == 0x7f;
  });
}

// A heartbeat source or destination: a unicast address. Loopback stays allowed so that
// several nodes can be tried out on one host.
bool isUsableNodeAddress(const IpAddress& a) {
  if (a.isV4()) {
    const bool unspecified =
        a.bytes[0] == 0 && a.bytes[1] == 0 && a.bytes[2] == 0 && a.bytes[3] == 0;
    const bool broadcast =
        a.bytes[0] == 255 && a.bytes[1] == 255 && a.bytes[2] == 255 && a.bytes[3] == 255;
    return !unspecified && !broadcast && !a.isMulticast();
  }
  const bool unspecified =
      std::all_of(a.bytes.begin(), a.bytes.end(), [](uint8_t b) { return b == 0; });
  return !unspecified && !a.isMulticast();
}

// A mapping whose keys have been checked against the schema.
struct Fields {
  const YNode* node = nullptr;  // the mapping (or whatever stood in its place)
  std::string path;
  bool is_map = false;
  std::map<std::string, std::pair<const YNode*, const YNode*>> found;  // key -> (key, value)

  const YNode* value(const std::string& key) const {
    auto it = found.find(key);
    return it == found.end() ? nullptr : it->second.second;
  }
  const YNode* keyNode(const std::string& key) const {
    auto it = found.find(key);
    return it == found.end() ? nullptr : it->second.first;
  }
};

class Validator {
 public:
  explicit Validator(const LoadOptions& options) : options_(options) {}

  std::vector<Problem>& problems() { return problems_; }

  std::optional<ClusterDefinition> validate(const YNode* root, const std::string& source_path);

 private:
  void report(const YNode* at, std::string field, std::string message) {
    problems_.push_back({at->line, at->column, std::move(field), std::move(message)});
  }

  Fields checkMap(const YNode* node, const std::string& path,
                  const std::vector<std::string>& allowed, const std::string& what);

  // The value of `key`, or nullptr after reporting it missing (when `required`).
  const YNode* scalarField(const Fields& f, const std::string& key, bool required,
                           const std::string& expected);
  std::optional<std::string> stringField(const Fields& f, const std::string& key, bool required,
                                         const std::string& expected);
  // An unsigned integer within [lo, hi]; nullopt if absent or wrong (wrong is reported).
  std::optional<uint64_t> integerField(const Fields& f, const std::string& key, uint64_t lo,
                                       uint64_t hi, const std::string& unit);
  // One of `choices` (value, name); nullopt if absent or wrong (wrong is reported).
  template <typename E>
  std::optional<E> choiceField(const Fields& f, const std::string& key,
                               const std::vector<std::pair<E, std::string>>& choices,
                               bool required);
  std::vector<const YNode*> listField(const Fields& f, const std::string& key, bool required,
                                      const std::string& expected);

  // Each returns what it could read; what it could not is reported and left at its default.
  TimingProfile checkTiming(const YNode* node);
  std::vector<Service> checkServices(const Fields& root, const std::string& cluster_name,
                                     Backend backend);
  std::vector<Node> checkNodes(const Fields& root);
  std::vector<std::optional<IpAddress>> checkHeartbeatMulticast(const Fields& root,
                                                                const std::vector<Node>& nodes);
  std::vector<HealthCheck> checkHealthChecks(const Fields& root);
  std::vector<std::string> checkNotifyHooks(const Fields& root);
  void checkAddressesUnique();

  struct AddressUse {
    IpAddress address;
    const YNode* at;
    std::string field;
  };

  const LoadOptions& options_;
  std::vector<Problem> problems_;
  std::vector<AddressUse> addresses_;
};

Fields Validator::checkMap(const YNode* node, const std::string& path,
                           const std::vector<std::string>& allowed, const std::string& what) {
  Fields f;
  f.node = node;
  f.path = path;
  if (node->kind != YNode::Kind::Map) {
    report(node, path, "expected a mapping (" + what + "), got " + kindName(node));
    return f;
  }
  f.is_map = true;
  for (const auto& [key, value] : node->entries) {
    if (key->kind != YNode::Kind::Scalar) {
      report(key, path, "expected a plain key, got " + std::string(kindName(key)));
      continue;
    }
    const std::string& k = key->value;
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
      std::string message = "unknown key " + quote(k) + "; expected one of:";
      std::string best;
      std::size_t best_distance = 3;  // suggest only close misspellings
      for (const auto& a : allowed) {
        message += " " + a;
        const std::size_t d = editDistance(k.substr(0, 64), a);
        if (d < best_distance) {
          best_distance = d;
          best = a;
        }
      }
      if (!best.empty()) {
        message += " (did you mean " + best + "?)";
      }
      report(key, join(path, k), message);
      continue;
    }
    auto [it, inserted] = f.found.emplace(k, std::make_pair(key, value));
    if (!inserted) {
      report(key, join(path, k),
             "duplicate key; it is already given at line " +
                 std::to_string(it->second.first->line) + " (a key may appear once per mapping)");
    }
  }
  return f;
}

const YNode* Validator::scalarField(const Fields& f, const std::string& key, bool required,
                                    const std::string& expected) {
  if (!f.is_map) {
    return nullptr;
  }
  const YNode* v = f.value(key);
  if (v == nullptr) {
    if (required) {
      report(f.node, join(f.path, key), "missing required field; expected " + expected);
    }
    return nullptr;
  }
  if (v->kind == YNode::Kind::Null) {
    report(f.keyNode(key), join(f.path, key), "no value given; expected " + expected);
    return nullptr;
  }
  if (v->kind != YNode::Kind::Scalar) {
    report(v, join(f.path, key), "expected " + expected + ", got " + kindName(v));
    return nullptr;
  }
  return v;
}

std::optional<std::string> Validator::stringField(const Fields& f, const std::string& key,
                                                  bool required, const std::string& expected) {
  const YNode* v = scalarField(f, key, required, expected);
  if (v == nullptr) {
    return std::nullopt;
  }
  return v->value;
}

std::optional<uint64_t> Validator::integerField(const Fields& f, const std::string& key,
                                                uint64_t lo, uint64_t hi, const std::string& unit) {
  const std::string expected = "an integer " + std::to_string(lo) + ".." + std::to_string(hi) +
                               (unit.empty() ? "" : " " + unit);
  const YNode* v = scalarField(f, key, false, expected);
  if (v == nullptr) {
    return std::nullopt;
  }
  const auto n = parseUnsigned(v->value);
  if (!n || *n < lo || *n > hi) {
    report(v, join(f.path, key), "expected " + expected + ", got " + quote(v->value));
    return std::nullopt;
  }
  return n;
}

template <typename E>
std::optional<E> Validator::choiceField(const Fields& f, const std::string& key,
                                        const std::vector<std::pair<E, std::string>>& choices,
                                        bool required) {
  std::string expected = "one of";
  for (std::size_t i = 0; i < choices.size(); ++i) {
    expected += (i == 0 ? " " : ", ") + choices[i].second;
  }
  const YNode* v = scalarField(f, key, required, expected);
  if (v == nullptr) {
    return std::nullopt;
  }
  for (const auto& [value, name] : choices) {
    if (v->value == name) {
      return value;
    }
  }
  report(v, join(f.path, key), "expected " + expected + ", got " + quote(v->value));
  return std::nullopt;
}

std::vector<const YNode*> Validator::listField(const Fields& f, const std::string& key,
                                               bool required, const std::string& expected) {
  if (!f.is_map) {
    return {};
  }
  const YNode* v = f.value(key);
  if (v == nullptr) {
    if (required) {
      report(f.node, join(f.path, key), "missing required field; expected " + expected);
    }
    return {};
  }
  if (v->kind == YNode::Kind::Null) {
    if (required) {
      report(f.keyNode(key), join(f.path, key), "no value given; expected " + expected);
    }
    return {};
  }
  if (v->kind != YNode::Kind::Sequence) {
    report(v, join(f.path, key), "expected " + expected + ", got " + kindName(v));
    return {};
  }
  if (v->items.empty() && required) {
    report(v, join(f.path, key), "the list is empty; expected " + expected);
  }
  return v->items;
}

// ---------------------------------------------------------------------------------------------

const std::vector<std::pair<HashMode, std::string>> kHashModes = {
    {HashMode::SourceIp, "sourceip"},
    {HashMode::SourceIpSourcePort, "sourceip-sourceport"},
    {HashMode::SourceIpSourcePortDestPort, "sourceip-sourceport-destport"},
};
const std::vector<std::pair<Backend, std::string>> kBackends = {
    {Backend::Auto, "auto"}, {Backend::Nftables, "nftables"}, {Backend::ClusterIp, "clusterip"}};
const std::vector<std::pair<bool, std::string>> kOnOff = {{true, "on"}, {false, "off"}};
const std::vector<std::pair<PartitionPolicy, std::string>> kPolicies = {
    {PartitionPolicy::Majority, "majority"}, {PartitionPolicy::ServeAll, "serve-all"}};
const std::vector<std::pair<HealthCheck::Kind, std::string>> kCheckKinds = {
    {HealthCheck::Kind::Link, "link"},
    {HealthCheck::Kind::Script, "script"},
    {HealthCheck::Kind::Load, "load"},
    {HealthCheck::Kind::Disk, "disk"},
    {HealthCheck::Kind::Reach, "reach"}};

// Timing overrides, in the order of TimingProfile. Milliseconds fields end in _ms.
constexpr uint64_t kMaxTimingValue = 86400000;  // one day: anything larger is a typo

TimingProfile Validator::checkTiming(const YNode* node) {
  const std::string names = "default or fast";
  TimingProfile timing = *timingPreset("default");
  if (node->kind == YNode::Kind::Scalar) {
    auto preset = timingPreset(node->value);
    if (!preset) {
      report(node, "timing",
             "expected a timing profile name (" + names +
                 ") or a mapping with profile and "
                 "overrides, got " +
                 quote(node->value));
      return timing;
    }
    return *preset;
  }
  const Fields f = checkMap(node, "timing",
                            {"profile", "heartbeat_interval_ms", "suspect_after_ms",
                             "suspicion_timeout_ms", "probe_timeout_ms", "indirect_probes",
                             "flap_window_ms", "flap_threshold", "flap_hold_down_ms"},
                            "a profile name (" + names + ") with optional overrides");
  if (!f.is_map) {
    return timing;
  }
  if (auto name = stringField(f, "profile", false, names)) {
    auto preset = timingPreset(*name);
    if (!preset) {
      report(f.value("profile"), "timing.profile",
             "expected a timing profile name (" + names + "), got " + quote(*name));
      return timing;  // the overrides would be checked against the wrong base values
    }
    timing = *preset;
  }
  const std::size_t before = problems_.size();
  auto ms = [&](const char* key, Millis& field) {
    if (auto v = integerField(f, key, 0, kMaxTimingValue, "ms")) {
      field = Millis{static_cast<int64_t>(*v)};
    }
  };
  ms("heartbeat_interval_ms", timing.heartbeat_interval);
  ms("suspect_after_ms", timing.suspect_after);
  ms("suspicion_timeout_ms", timing.suspicion_timeout);
  ms("probe_timeout_ms", timing.probe_timeout);
  if (auto v = integerField(f, "indirect_probes", 0, kMaxNodes, "")) {
    timing.indirect_probes = static_cast<uint32_t>(*v);
  }
  ms("flap_window_ms", timing.flap_window);
  if (auto v = integerField(f, "flap_threshold", 0, kMaxTimingValue, "")) {
    timing.flap_threshold = static_cast<uint32_t>(*v);
  }
  ms("flap_hold_down_ms", timing.flap_hold_down);
  if (problems_.size() != before) {
    return timing;  // consistency is only meaningful once every value parsed
  }
  for (const TimingIssue& issue : checkTimingProfile(timing)) {
    // Point at the override when there is one; a preset value that conflicts with another
    // override is reported at the timing mapping itself.
    if (const YNode* at = f.value(issue.field)) {
      report(at, "timing." + issue.field, issue.message);
    } else {
      report(node, "timing." + issue.field,
             issue.message + " (the " + timing.name +
                 " profile's value, which the overrides "
                 "here no longer fit; set " +
                 issue.field + " too)");
    }
  }
  return timing;
}

std::vector<Service> Validator::checkServices(const Fields& root, const std::string& cluster_name,
                                              Backend backend) {
  std::vector<Service> services;
  const auto items = listField(
      root, "services", true, "a list of at least one service (name, vip, interface, cluster_mac)");
  std::map<std::string, const YNode*> names;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string path = indexed("services", i);
    const Fields f = checkMap(
        items[i], path, {"name", "vip", "interface", "cluster_mac", "hash", "buckets", "seed"},
        "a service with name, vip, interface and cluster_mac");
    Service s;
    if (auto name = stringField(f, "name", true, "a service name")) {
      if (!matchesName(*name, isLower, isServiceChar) || name->size() > 32) {
        report(f.value("name"), join(path, "name"),
               "expected a lower-case letter followed by lower-case letters, digits, '-' or '_', "
               "at most 32 characters (the dataplane names nftables objects after it), got " +
                   quote(*name));
      } else if (auto [it, inserted] = names.emplace(*name, f.value("name")); !inserted) {
        report(f.value("name"), join(path, "name"),
               "duplicate service name " + quote(*name) + "; it is already used at line " +
                   std::to_string(it->second->line));
      }
      s.name = *name;
    }
    const YNode* vip_node = scalarField(f, "vip", true, "an IPv4 or IPv6 address");
    bool have_vip = false;
    if (vip_node != nullptr) {
      if (auto a = IpAddress::parse(vip_node->value)) {
        if (a->isUnusableAsVip()) {
          report(vip_node, join(path, "vip"),
                 "expected a unicast address (not multicast, broadcast, unspecified or "
                 "loopback), got " +
                     quote(vip_node->value));
        } else {
          s.vip = *a;
          have_vip = true;
          addresses_.push_back({*a, vip_node, join(path, "vip")});
        }
      } else {
        report(vip_node, join(path, "vip"),
               "expected an IPv4 or IPv6 address, got " + quote(vip_node->value));
      }
    }
    if (auto ifname = stringField(f, "interface", true, "a network interface name such as eth0")) {
      if (!isValidInterfaceName(*ifname)) {
        report(f.value("interface"), join(path, "interface"),
               "expected a Linux interface name (1..15 characters, no '/', ':' or white space), "
               "got " +
                   quote(*ifname));
      }
      s.interface = *ifname;
    }
    if (const YNode* mac_node = scalarField(f, "cluster_mac", true,
                                            "a multicast MAC address such as 01:00:5e:00:00:50")) {
      const auto mac = MacAddress::parse(mac_node->value);
      const std::string field = join(path, "cluster_mac");
      if (!mac) {
        report(mac_node, field,
               "expected a MAC address of six hex pairs (01:00:5e:00:00:50), got " +
                   quote(mac_node->value));
      } else if (mac->isBroadcast()) {
        report(mac_node, field,
               "the broadcast MAC would deliver the VIP's traffic to every host on the LAN; "
               "expected a multicast MAC such as 01:00:5e:00:00:50");
      } else if (!mac->isMulticast()) {
        report(mac_node, field,
               "expected a multicast MAC (lowest bit of the first byte set, e.g. 01:00:5e:..), "
               "got the unicast " +
                   mac->toString() + "; a unicast MAC reaches only one node");
      } else if (have_vip && !s.vip.isV4() && !(mac->bytes[0] == 0x33 && mac->bytes[1] == 0x33)) {
        report(
            mac_node, field,
            "an IPv6 VIP needs a 33:33:xx:xx:xx:xx MAC (IPv6 multicast), got " + mac->toString());
      } else {
        s.cluster_mac = *mac;
      }
    }
    if (auto hash = choiceField(f, "hash", kHashModes, false)) {
      s.hash = *hash;
    }
    if (auto buckets = integerField(f, "buckets", 1, kMaxBuckets, "")) {
      if (backend == Backend::ClusterIp && *buckets > kMaxClusterIpBuckets) {
        report(f.value("buckets"), join(path, "buckets"),
               "the clusterip dataplane handles at most " + std::to_string(kMaxClusterIpBuckets) +
                   " buckets (its --total-nodes limit), got " + std::to_string(*buckets) +
                   "; lower buckets or use dataplane: nftables");
      }
      s.buckets = static_cast<uint32_t>(*buckets);
    }
    if (auto seed = integerField(f, "seed", 0, UINT32_MAX, "")) {
      s.seed = static_cast<uint32_t>(*seed);
    } else if (f.value("seed") == nullptr) {
      s.seed = defaultServiceSeed(cluster_name, s.name);
    }
    services.push_back(std::move(s));
  }
  return services;
}

std::vector<Node> Validator::checkNodes(const Fields& root) {
  std::vector<Node> nodes;
  const auto items =
      listField(root, "nodes", true,
                "a list of 1.." + std::to_string(kMaxNodes) + " nodes (name, addresses)");
  if (items.size() > kMaxNodes) {
    report(items[kMaxNodes], "nodes",
           "a cluster has at most " + std::to_string(kMaxNodes) +
               " nodes (the CLUSTERIP node "
               "number limit and the heartbeat's design size); this is node " +
               std::to_string(kMaxNodes + 1));
  }
  std::map<std::string, const YNode*> names;
  // Link layout of the first node with valid addresses: every other node must match it.
  std::optional<std::size_t> reference;
  std::vector<const YNode*> address_lists(items.size(), nullptr);
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string path = indexed("nodes", i);
    const Fields f =
        checkMap(items[i], path, {"name", "addresses", "weight"}, "a node with name and addresses");
    Node n;
    if (auto name = stringField(f, "name", true, "a node name")) {
      if (!matchesName(*name, isAlnum, isNodeChar) || name->size() > 63) {
        report(f.value("name"), join(path, "name"),
               "expected a letter or digit followed by letters, digits, '_', '.' or '-', at most "
               "63 characters (a host name), got " +
                   quote(*name));
      } else if (auto [it, inserted] = names.emplace(*name, f.value("name")); !inserted) {
        report(f.value("name"), join(path, "name"),
               "duplicate node name " + quote(*name) + "; it is already used at line " +
                   std::to_string(it->second->line));
      }
      n.name = *name;
    }
    const std::string expected = "a list of addresses, one per heartbeat link, e.g. [10.0.0.1]";
    const auto addrs = listField(f, "addresses", true, expected);
    bool all_valid = !addrs.empty();
    for (std::size_t j = 0; j < addrs.size(); ++j) {
      const std::string field = indexed(join(path, "addresses"), j);
      const YNode* a = addrs[j];
      if (a->kind != YNode::Kind::Scalar) {
        report(a, field, "expected an IPv4 or IPv6 address, got " + std::string(kindName(a)));
        all_valid = false;
        continue;
      }
      const auto ip = IpAddress::parse(a->value);
      if (!ip) {
        report(a, field, "expected an IPv4 or IPv6 address, got " + quote(a->value));
        all_valid = false;
        continue;
      }
      if (!isUsableNodeAddress(*ip)) {
        report(a, field,
               "expected a unicast address (not multicast, broadcast or unspecified), got " +
                   ip->toString());
        all_valid = false;
        continue;
      }
      n.addresses.push_back(*ip);
      addresses_.push_back({*ip, a, field});
    }
    if (all_valid) {
      address_lists[i] = f.value("addresses");
      if (!reference) {
        reference = i;
      }
    }
    if (auto weight = integerField(f, "weight", 1, 100, "(share of buckets)")) {
      n.weight = static_cast<uint32_t>(*weight);
    }
    nodes.push_back(std::move(n));
  }
  if (!reference) {
    return nodes;
  }
  // Heartbeat network i joins link i of every node: each node needs the same number of links,
  // and one link cannot mix IPv4 and IPv6.
  const Node& ref = nodes[*reference];
  const std::string ref_name = indexed("nodes", *reference);
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (i == *reference || address_lists[i] == nullptr) {
      continue;
    }
    const Node& n = nodes[i];
    const std::string path = join(indexed("nodes", i), "addresses");
    if (n.addresses.size() != ref.addresses.size()) {
      report(address_lists[i], path,
             "this node has " + std::to_string(n.addresses.size()) + " heartbeat link(s) but " +
                 ref_name + " has " + std::to_string(ref.addresses.size()) +
                 "; every node needs one address per heartbeat link, in the same order");
      continue;
    }
    for (std::size_t j = 0; j < n.addresses.size(); ++j) {
      if (n.addresses[j].family != ref.addresses[j].family) {
        report(address_lists[i]->items[j], indexed(path, j),
               std::string("link ") + std::to_string(j) + " is " +
                   (ref.addresses[j].isV4() ? "IPv4" : "IPv6") + " on " + ref_name +
                   "; expected an " + (ref.addresses[j].isV4() ? "IPv4" : "IPv6") +
                   " address here too (a heartbeat link has one address family)");
      }
    }
  }
  return nodes;
}

// A group that every host (or every router) of a link joins anyway: heartbeats sent to it
// would reach every machine on the link, not only the cluster's nodes.
bool isAllNodesGroup(const IpAddress& g) {
  if (g.isV4()) {
    return g.bytes[0] == 224 && g.bytes[1] == 0 && g.bytes[2] == 0 && g.bytes[3] <= 2;
  }
  const bool low_is_one_or_two = std::all_of(g.bytes.begin() + 2, g.bytes.begin() + 15,
                                             [](uint8_t b) { return b == 0; }) &&
                                 (g.bytes[15] == 1 || g.bytes[15] == 2);
  return low_is_one_or_two;
}

std::vector<std::optional<IpAddress>> Validator::checkHeartbeatMulticast(
    const Fields& root, const std::vector<Node>& nodes) {
  const std::string expected =
      "a list with one entry per heartbeat link, each a multicast group or off, e.g. "
      "[239.192.74.1, off]";
  const auto items = listField(root, "heartbeat_multicast", false, expected);
  if (items.empty()) {
    return {};
  }
  // The link layout comes from the nodes; when no node has a valid one there is nothing to
  // check the entries against (the nodes' own errors are reported).
  const Node* ref = nullptr;
  for (const Node& n : nodes) {
    if (!n.addresses.empty() && (ref == nullptr || n.addresses.size() > ref->addresses.size())) {
      ref = &n;
    }
  }
  if (ref != nullptr && items.size() != ref->addresses.size()) {
    report(root.value("heartbeat_multicast"), "heartbeat_multicast",
           "has " + std::to_string(items.size()) + " entries but the nodes have " +
               std::to_string(ref->addresses.size()) +
               " heartbeat link(s); expected one entry per link, in the order of the nodes' "
               "addresses (a multicast group, or off for unicast)");
    return {};
  }
  std::vector<std::optional<IpAddress>> groups;
  std::map<IpAddress, std::size_t> seen;
  for (std::size_t j = 0; j < items.size(); ++j) {
    const std::string field = indexed("heartbeat_multicast", j);
    const YNode* v = items[j];
    groups.emplace_back();
    if (v->kind != YNode::Kind::Scalar) {
      report(v, field, "expected a multicast group or off, got " + std::string(kindName(v)));
      continue;
    }
    if (v->value == "off") {
      continue;
    }
    const auto g = IpAddress::parse(v->value);
    if (!g) {
      report(v, field, "expected a multicast group address or off, got " + quote(v->value));
      continue;
    }
    if (!g->isMulticast()) {
      report(v, field,
             "expected a multicast group (224.0.0.0/4 or ff00::/8), got " + g->toString() +
                 "; write off for unicast heartbeats on this link");
      continue;
    }
    if (isAllNodesGroup(*g)) {
      report(v, field,
             g->toString() + " is joined by every host or router on the link; choose a group of "
                             "the cluster's own, e.g. 239.192.x.y (IPv4) or ff12::x (IPv6)");
      continue;
    }
    if (!g->isV4() && ((g->bytes[1] & 0x0f) < 2 || (g->bytes[1] & 0x0f) == 0x0f)) {
      report(v, field,
             g->toString() + " has a reserved scope or one smaller than link-local (ff01::/16 "
                             "never leaves the host); use a scope from 2 (link) to 14 (global)");
      continue;
    }
    const bool source_specific =
        g->isV4() ? g->bytes[0] == 232
                  : (g->bytes[1] & 0xf0) == 0x30 &&
                        std::all_of(g->bytes.begin() + 2, g->bytes.begin() + 12,
                                    [](uint8_t b) { return b == 0; });
    if (source_specific) {
      report(v, field,
             g->toString() + " is in the source-specific range (232.0.0.0/8, ff3x::/96), which "
                             "needs a join per sender; choose a group outside it, e.g. "
                             "239.192.x.y or ff12::x");
      continue;
    }
    if (ref != nullptr) {
      const IpAddress& own = ref->addresses[j];
      if (own.isV4() != g->isV4()) {
        report(v, field,
               "link " + std::to_string(j) + " is " + (own.isV4() ? "IPv4" : "IPv6") +
                   " but the group " + g->toString() + " is " + (g->isV4() ? "IPv4" : "IPv6") +
                   "; a link's group has the family of its addresses");
        continue;
      }
      const bool loopback = std::any_of(nodes.begin(), nodes.end(), [&](const Node& n) {
        return j < n.addresses.size() && n.addresses[j].isLoopback();
      });
      if (loopback) {
        report(v, field,
               "link " + std::to_string(j) +
                   " uses loopback addresses, which carry no multicast; write off for it");
        continue;
      }
    }
    if (auto [it, inserted] = seen.emplace(*g, j); !inserted) {
      report(v, field,
             "the group " + g->toString() + " is already used by link " +
                 std::to_string(it->second) + "; every link needs a group of its own");
      continue;
    }
    groups.back() = *g;
  }
  if (std::none_of(groups.begin(), groups.end(), [](const auto& g) { return g.has_value(); })) {
    return {};
  }
  return groups;
}

std::vector<HealthCheck> Validator::checkHealthChecks(const Fields& root) {
  std::vector<HealthCheck> checks;
  const YNode* given = root.value("health_checks");
  if (given == nullptr || given->kind == YNode::Kind::Null) {
    return checks;  // optional; `health_checks:` with nothing after it means none
  }
  const auto items = listField(root, "health_checks", false, "a list of health checks");
  std::map<std::string, const YNode*> names;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string path = indexed("health_checks", i);
    const Fields f = checkMap(
        items[i], path,
        {"name", "kind", "target", "threshold", "interval_ms", "timeout_ms", "rise", "fall"},
        "a health check with name, kind and target");
    if (!f.is_map) {
      continue;
    }
    HealthCheck c;
    if (auto name = stringField(f, "name", true, "a check name")) {
      if (!matchesName(*name, isAlnum, isNodeChar) || name->size() > 63) {
        report(f.value("name"), join(path, "name"),
               "expected a letter or digit followed by letters, digits, '_', '.' or '-', at most "
               "63 characters, got " +
                   quote(*name));
      } else if (auto [it, inserted] = names.emplace(*name, f.value("name")); !inserted) {
        report(f.value("name"), join(path, "name"),
               "duplicate health check name " + quote(*name) + "; it is already used at line " +
                   std::to_string(it->second->line));
      }
      c.name = *name;
    }
    const auto kind = choiceField(f, "kind", kCheckKinds, true);
    if (kind) {
      c.kind = *kind;
    }
    const bool needs_target = kind && *kind != HealthCheck::Kind::Load;
    const char* target_expected = "a target";
    if (kind) {
      switch (*kind) {
        case HealthCheck::Kind::Link:
          target_expected = "the interface whose carrier is checked";
          break;
        case HealthCheck::Kind::Script:
          target_expected = "the absolute path of the script to run";
          break;
        case HealthCheck::Kind::Load:
          target_expected = "nothing (a load check has no target)";
          break;
        case HealthCheck::Kind::Disk:
          target_expected = "the absolute path of the mount point";
          break;
        case HealthCheck::Kind::Reach:
          target_expected = "a host or host:port to reach";
          break;
      }
    }
    if (auto target = stringField(f, "target", needs_target, target_expected)) {
      c.target = *target;
      const YNode* at = f.value("target");
      const std::string field = join(path, "target");
      if (kind && *kind == HealthCheck::Kind::Link && !isValidInterfaceName(*target)) {
        report(at, field,
               "expected an interface name (1..15 characters, no '/', ':' or white "
               "space), got " +
                   quote(*target));
      } else if (kind && (*kind == HealthCheck::Kind::Script || *kind == HealthCheck::Kind::Disk) &&
                 (target->empty() || (*target)[0] != '/')) {
        report(at, field, std::string("expected ") + target_expected + ", got " + quote(*target));
      } else if (kind && *kind == HealthCheck::Kind::Load) {
        report(at, field, "a load check has no target; remove it");
      } else if (target->empty()) {
        report(at, field, std::string("expected ") + target_expected + ", got an empty string");
      }
    }
    const bool needs_threshold =
        kind && (*kind == HealthCheck::Kind::Load || *kind == HealthCheck::Kind::Disk);
    const std::string threshold_expected =
        kind && *kind == HealthCheck::Kind::Disk
            ? "the least free space in percent, a number above 0 and below 100"
            : "the highest 1-minute load average, a number above 0";
    if (const YNode* t = scalarField(f, "threshold", needs_threshold, threshold_expected)) {
      const auto v = parseNumber(t->value);
      const std::string field = join(path, "threshold");
      if (!needs_threshold) {
        report(t, field, "only load and disk checks have a threshold; remove it");
      } else if (!v || *v <= 0 || (*kind == HealthCheck::Kind::Disk && *v >= 100)) {
        report(t, field, "expected " + threshold_expected + ", got " + quote(t->value));
      } else {
        c.threshold = *v;
      }
    }
    if (auto v = integerField(f, "interval_ms", 10, 3600000, "ms")) {
      c.interval = Millis{static_cast<int64_t>(*v)};
    }
    if (auto v = integerField(f, "timeout_ms", 1, 3600000, "ms")) {
      c.timeout = Millis{static_cast<int64_t>(*v)};
      if (c.timeout > c.interval) {
        report(f.value("timeout_ms"), join(path, "timeout_ms"),
               "expected at most interval_ms (" + std::to_string(c.interval.count()) +
                   " ms): a check must finish before the next one starts");
      }
    }
    if (auto v = integerField(f, "rise", 1, 100, "passes")) {
      c.rise = static_cast<uint32_t>(*v);
    }
    if (auto v = integerField(f, "fall", 1, 100, "failures")) {
      c.fall = static_cast<uint32_t>(*v);
    }
    checks.push_back(std::move(c));
  }
  return checks;
}

std::vector<std::string> Validator::checkNotifyHooks(const Fields& root) {
  std::vector<std::string> hooks;
  const auto items = listField(root, "notify_hooks", false,
                               "a list of absolute script paths, e.g. [/etc/shoal/notify.sh]");
  std::map<std::string, const YNode*> seen;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const YNode* item = items[i];
    const std::string field = indexed("notify_hooks", i);
    if (item->kind != YNode::Kind::Scalar || item->value.empty() || item->value[0] != '/' ||
        item->value.find('\0') != std::string::npos) {
      report(item, field,
             "expected the absolute path of a script, got " +
                 (item->kind == YNode::Kind::Scalar ? quote(item->value)
                                                    : std::string(kindName(item))));
      continue;
    }
    if (auto [it, inserted] = seen.emplace(item->value, item); !inserted) {
      report(item, field,
             "the script " + quote(item->value) + " is already listed at line " +
                 std::to_string(it->second->line) + "; it would run twice per event");
      continue;
    }
    hooks.push_back(item->value);
  }
  return hooks;
}

void Validator::checkAddressesUnique() {
  // Report the later use of each address, in file order, whichever sections they are in.
  std::stable_sort(addresses_.begin(), addresses_.end(),
                   [](const AddressUse& a, const AddressUse& b) {
                     return std::tie(a.at->line, a.at->column) < std::tie(b.at->line, b.at->column);
                   });
  std::map<IpAddress, const AddressUse*> first;
  for (const AddressUse& use : addresses_) {
    auto [it, inserted] = first.emplace(use.address, &use);
    if (!inserted) {
      report(use.at, use.field,
             "address " + use.address.toString() + " is already used by " + it->second->field +
                 " at line " + std::to_string(it->second->at->line) +
                 "; every VIP and node address must be different");
    }
  }
}

std::optional<ClusterDefinition> Validator::validate(const YNode* root,
                                                     const std::string& source_path) {
  ClusterDefinition def;
  def.source_path = source_path;
  if (root == nullptr || root->kind == YNode::Kind::Null) {
    problems_.push_back({root ? root->line : 1, root ? root->column : 1, "",
                         "the file is empty; expected a mapping with cluster, key_file, services "
                         "and nodes (see etc/cluster.yaml)"});
    return std::nullopt;
  }
  const Fields f =
      checkMap(root, "",
               {"cluster", "key_file", "port", "dataplane", "partition_policy", "timing",
                "services", "nodes", "heartbeat_multicast", "health_checks", "health_hold_down_ms",
                "notify_hooks", "handoff_margin_us", "handoff_bridge", "leave_linger_ms"},
               "a cluster definition with cluster, key_file, services and nodes");
  if (!f.is_map) {
    return std::nullopt;
  }
  if (auto name = stringField(f, "cluster", true, "a cluster name")) {
    if (!matchesName(*name, isLowerAlnum, isClusterChar) || name->size() > 32) {
      report(f.value("cluster"), "cluster",
             "expected a lower-case letter or digit followed by lower-case letters, digits or "
             "'-', at most 32 characters, got " +
                 quote(*name));
    }
    def.name = *name;
  }
  if (auto port = integerField(f, "port", 1, 65535, "")) {
    def.port = static_cast<uint16_t>(*port);
  }
  if (auto backend = choiceField(f, "dataplane", kBackends, false)) {
    def.backend = *backend;
  }
  if (auto policy = choiceField(f, "partition_policy", kPolicies, false)) {
    def.partition_policy = *policy;
  }
  if (const YNode* t = f.value("timing")) {
    if (t->kind == YNode::Kind::Null) {
      report(f.keyNode("timing"), "timing", "no value given; expected default, fast or a mapping");
    } else {
      def.timing = checkTiming(t);
    }
  } else {
    def.timing = *timingPreset("default");
  }
  def.services = checkServices(f, def.name, def.backend);
  def.nodes = checkNodes(f);
  checkAddressesUnique();
  def.heartbeat_groups = checkHeartbeatMulticast(f, def.nodes);
  def.health_checks = checkHealthChecks(f);
  if (auto v = integerField(f, "health_hold_down_ms", 0, 3600000, "ms")) {
    def.health_hold_down = Millis{static_cast<int64_t>(*v)};
  }
  def.notify_hooks = checkNotifyHooks(f);
  if (auto v = integerField(f, "handoff_margin_us", 0, 100000, "us")) {
    def.handoff_margin = std::chrono::microseconds{static_cast<int64_t>(*v)};
  }
  if (auto v = choiceField(f, "handoff_bridge", kOnOff, false)) {
    def.handoff_bridge = *v;
  }
  if (auto v = integerField(f, "leave_linger_ms", 0, 3600000, "ms")) {
    def.leave_linger = Millis{static_cast<int64_t>(*v)};
  }
  if (const YNode* k = scalarField(f, "key_file", true,
                                   "the path of the cluster key, absolute or relative to this "
                                   "file's folder")) {
    def.key_file = k->value;
    if (k->value.empty() || k->value.find('\0') != std::string::npos) {
      report(k, "key_file", "expected a file path, got " + quote(k->value));
    } else if (options_.check_key_file) {
      const Status safe = checkKeyFileSafety(resolveKeyFilePath(def));
      if (!safe.ok()) {
        report(k, "key_file", safe.error().message);
      }
    }
  }
  if (!problems_.empty()) {
    return std::nullopt;
  }
  return def;
}

LoadResult finish(std::vector<Problem> problems, std::optional<ClusterDefinition> def,
                  const std::string& file) {
  LoadResult result;
  std::stable_sort(problems.begin(), problems.end(), [](const Problem& a, const Problem& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  });
  for (auto& p : problems) {
    if (result.errors.size() == kMaxReportedErrors) {
      result.errors.push_back(
          {file, p.line, p.column, "",
           "too many errors; stopped after " + std::to_string(kMaxReportedErrors)});
      break;
    }
    result.errors.push_back({file, p.line, p.column, std::move(p.field), std::move(p.message)});
  }
  if (result.errors.empty()) {
    result.definition = std::move(def);
  }
  return result;
}

}  // namespace

std::string ConfigError::toString() const {
  std::string s = file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": ";
  if (!field.empty()) {
    s += field + ": ";
  }
  return s + message;
}

LoadResult parseClusterDefinition(std::string_view yaml, const std::string& path_for_messages,
                                  const LoadOptions& options) {
  try {
    ParsedDocument doc = parseYaml(yaml);
    std::vector<Problem> problems = std::move(doc.builder->problems());
    if (!doc.syntax_ok) {
      return finish(std::move(problems), std::nullopt, path_for_messages);
    }
    Validator v(options);
    auto def = v.validate(doc.builder->root(), path_for_messages);
    problems.insert(problems.end(), v.problems().begin(), v.problems().end());
    return finish(std::move(problems), std::move(def), path_for_messages);
  } catch (const std::exception& e) {
    // Only memory exhaustion is expected here; the promise is an error, never an exception.
    return finish(
        {{1, 1, "", std::string("internal error while reading the definition: ") + e.what()}},
        std::nullopt, path_for_messages);
  }
}

LoadResult loadClusterDefinition(const std::string& path, const LoadOptions& options) {
  auto fail = [&](std::string message) {
    return finish({{1, 1, "", std::move(message)}}, std::nullopt, path);
  };
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    return fail("cannot read the cluster definition: " +
                (ec ? ec.message() : std::string("no such file")));
  }
  if (!std::filesystem::is_regular_file(status)) {
    return fail("the cluster definition is not a regular file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return fail("cannot open the cluster definition for reading (check its permissions)");
  }
  std::string text;
  char buf[65536];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxDefinitionBytes) {
      return fail("the file is larger than " + std::to_string(kMaxDefinitionBytes) +
                  " bytes; a cluster definition is a few KiB (is this the right file?)");
    }
  }
  if (in.bad()) {
    return fail("reading the cluster definition failed");
  }
  return parseClusterDefinition(text, path, options);
}

std::string resolveKeyFilePath(const ClusterDefinition& def) {
  namespace fs = std::filesystem;
  const fs::path key(def.key_file);
  if (key.is_absolute()) {
    return key.lexically_normal().string();
  }
  std::error_code ec;
  fs::path folder = fs::path(def.source_path).parent_path();
  fs::path full = fs::absolute(folder / key, ec);
  if (ec) {
    full = folder / key;
  }
  return full.lexically_normal().string();
}

uint32_t defaultServiceSeed(std::string_view cluster_name, std::string_view service_name) {
  // NUL separators keep ("ab", "c") and ("a", "bc") apart.
  std::string input = "shoal-seed";
  input += '\0';
  input += cluster_name;
  input += '\0';
  input += service_name;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(input.data(), input.size(), digest, &len, EVP_sha256(), nullptr);
  return (uint32_t{digest[0]} << 24) | (uint32_t{digest[1]} << 16) | (uint32_t{digest[2]} << 8) |
         uint32_t{digest[3]};
}

}  // namespace shoal
