#include "actors/core/filter.hpp"

#include <bit>

#include <algorithm>
#include <charconv>
#include <compare>
#include <cstdio>
#include <limits>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "actors/core/twin_analytics.hpp"

namespace fleettwin::core {

/// One node of a parsed filter. A comparison is a leaf; AND/OR nodes are n-ary
/// so that long chains do not deepen the tree (evaluation recursion is bounded
/// by the parenthesis depth, which the parser limits).
struct filter_node {
  enum class kind : uint8_t { all_of, any_of, negation, comparison };

  enum class field_id : uint8_t {
    asset_id,
    kind,
    tenant,
    version,
    applied_records,
    connectivity,
    attribute,
    reported,
    desired,
    // `attributes:key`, `reported:key`, `desired:key` (AIP-160 map has-key).
    attribute_keys,
    reported_keys,
    desired_keys,
    // A property's last anomaly score (`anomaly.<p>`); present (`anomaly.<p>:*`,
    // `anomaly:<p>`, `anomaly:*`) while the property is anomalous.
    anomaly,
    anomaly_keys,
    // `quality.score` (the twin's data quality), `quality.<p>` (the number
    // of the property's quality flags; present while it has any).
    quality,
    quality_keys,
    // The twin's health in [0, 1].
    health,
    // Fields of an alert (ListAlerts): state, severity, property, detector.
    alert_state,
    alert_severity,
    alert_property,
    alert_detector,
  };

  enum class op_id : uint8_t { eq, ne, lt, le, gt, ge, has, present };

  enum class literal_type : uint8_t { text, number, boolean };

  /// A number as written: exact when it is an integer that fits int64.
  struct number {
    bool is_int = false;
    int64_t i = 0;
    double d = 0;
  };

  kind type = kind::comparison;
  std::vector<filter_node> children;

  // comparison
  field_id field = field_id::asset_id;
  op_id op = op_id::eq;
  std::string key;
  literal_type lit_type = literal_type::text;
  /// The decoded string, or the source text of a number or bool (used for
  /// string-form comparisons).
  std::string lit_text;
  /// A text literal ending in an unescaped `*`: `=`, `:` and `!=` compare the
  /// part before it as a prefix.
  bool prefix = false;
  number num;
};

namespace {

using node = filter_node;
using field_id = filter_node::field_id;
using op_id = filter_node::op_id;
using literal_type = filter_node::literal_type;
using number = filter_node::number;

constexpr size_t max_filter_bytes = 4096;
constexpr size_t max_depth = 32;
constexpr size_t max_echo_bytes = 64;

constexpr const char* field_list =
    "expected asset_id, kind, tenant, version, connectivity, applied_records, "
    "attributes.<key>, reported.<property>, desired.<property>, anomaly.<property>, "
    "quality.score, quality.<property>, health (and for alerts state, severity, property, "
    "detector)";

// -- errors -------------------------------------------------------------------

struct parse_failure {
  filter_error err;
};

[[noreturn]] void fail(size_t pos, std::string what, std::string_view detail = {}) {
  std::string msg = std::move(what);
  msg += " at ";
  msg += std::to_string(pos);
  if (!detail.empty()) {
    msg += ": ";
    msg += detail;
  }
  throw parse_failure{filter_error{pos, std::move(msg)}};
}

/// `s` in double quotes, shortened if long, for error messages.
std::string quote(std::string_view s) {
  std::string out = "\"";
  if (s.size() > max_echo_bytes) {
    out += s.substr(0, max_echo_bytes);
    out += "...";
  } else {
    out += s;
  }
  out += '"';
  return out;
}

const char* op_text(op_id op) {
  switch (op) {
    case op_id::eq:
      return "=";
    case op_id::ne:
      return "!=";
    case op_id::lt:
      return "<";
    case op_id::le:
      return "<=";
    case op_id::gt:
      return ">";
    case op_id::ge:
      return ">=";
    case op_id::has:
    case op_id::present:
      return ":";
  }
  return "?";
}

// -- tokenizer ----------------------------------------------------------------

enum class tok : uint8_t { end, lparen, rparen, op, word, string };

struct token {
  tok type = tok::end;
  size_t pos = 0;
  /// The source text of the token.
  std::string_view raw;
  op_id op = op_id::eq;
  /// Words: the text (with a quoted key segment decoded); strings: decoded.
  std::string value;
  /// Strings: ends with an unescaped `*`; words: ends with `*`.
  bool prefix = false;
};

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

bool is_word_char(char c) {
  switch (c) {
    case '(':
    case ')':
    case '=':
    case '!':
    case '<':
    case '>':
    case ':':
    case '"':
    case '\'':
      return false;
    default:
      return !is_space(c) && static_cast<unsigned char>(c) >= 0x20 && c != 0x7f;
  }
}

/// Reads a quoted string starting at the quote `text[i]`; returns the index
/// after the closing quote. Sets `last_escaped` if the final character was
/// written with a backslash.
size_t read_quoted(std::string_view text, size_t i, std::string& out, bool& last_escaped) {
  const size_t start = i;
  const char q = text[i++];
  last_escaped = false;
  while (i < text.size()) {
    char c = text[i];
    if (c == q)
      return i + 1;
    if (c == '\\') {
      if (i + 1 >= text.size())
        break;
      char e = text[i + 1];
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        default:
          out += e;
      }
      last_escaped = true;
      i += 2;
      continue;
    }
    out += c;
    last_escaped = false;
    ++i;
  }
  fail(start, "unterminated string", std::string{"add the closing "} + q);
}

std::vector<token> tokenize(std::string_view text) {
  std::vector<token> out;
  size_t i = 0;
  while (true) {
    while (i < text.size() && is_space(text[i]))
      ++i;
    token t;
    t.pos = i;
    if (i >= text.size()) {
      t.type = tok::end;
      out.push_back(std::move(t));
      return out;
    }
    const char c = text[i];
    size_t next = i + 1;
    switch (c) {
      case '(':
        t.type = tok::lparen;
        break;
      case ')':
        t.type = tok::rparen;
        break;
      case ':':
        t.type = tok::op;
        t.op = op_id::has;
        break;
      case '=':
        if (i + 1 < text.size() && text[i + 1] == '=')
          fail(i, "unexpected \"==\"", "use \"=\" for equality");
        t.type = tok::op;
        t.op = op_id::eq;
        break;
      case '!':
        if (i + 1 >= text.size() || text[i + 1] != '=')
          fail(i, "unexpected \"!\"", "use NOT or \"-\" to negate, \"!=\" for inequality");
        t.type = tok::op;
        t.op = op_id::ne;
        next = i + 2;
        break;
      case '<':
      case '>': {
        const bool eq = i + 1 < text.size() && text[i + 1] == '=';
        t.type = tok::op;
        t.op = c == '<' ? (eq ? op_id::le : op_id::lt) : (eq ? op_id::ge : op_id::gt);
        next = eq ? i + 2 : i + 1;
        break;
      }
      case '"':
      case '\'': {
        bool last_escaped = false;
        t.type = tok::string;
        next = read_quoted(text, i, t.value, last_escaped);
        t.prefix = !t.value.empty() && t.value.back() == '*' && !last_escaped;
        break;
      }
      default: {
        if (!is_word_char(c)) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "0x%02x", static_cast<unsigned char>(c));
          fail(i, std::string{"unexpected control character "} + buf);
        }
        size_t j = i;
        while (j < text.size() && is_word_char(text[j]))
          ++j;
        t.type = tok::word;
        t.value.assign(text.substr(i, j - i));
        // `reported."odd:name"`: a quoted key segment right after the dot.
        if (t.value.back() == '.' && j < text.size() && (text[j] == '"' || text[j] == '\'')) {
          bool last_escaped = false;
          j = read_quoted(text, j, t.value, last_escaped);
        }
        t.prefix = t.value.back() == '*';
        next = j;
      }
    }
    t.raw = text.substr(i, next - i);
    out.push_back(std::move(t));
    i = next;
  }
}

/// A token as the user wrote it, for error messages.
std::string echo(const token& t) {
  if (t.type == tok::string)
    return "string " + (t.raw.size() > max_echo_bytes
                            ? std::string{t.raw.substr(0, max_echo_bytes)} + "..."
                            : std::string{t.raw});
  return quote(t.raw);
}

// -- literals -----------------------------------------------------------------

/// True if `w` is `[+-]digits[.digits][(e|E)[+-]digits]` (or `.digits`).
bool is_number_syntax(std::string_view w, bool& integer) {
  size_t i = 0;
  const size_t n = w.size();
  auto digit = [&](size_t k) { return k < n && w[k] >= '0' && w[k] <= '9'; };
  if (i < n && (w[i] == '+' || w[i] == '-'))
    ++i;
  size_t digits = 0;
  while (digit(i)) {
    ++i;
    ++digits;
  }
  integer = true;
  if (i < n && w[i] == '.') {
    integer = false;
    ++i;
    while (digit(i)) {
      ++i;
      ++digits;
    }
  }
  if (digits == 0)
    return false;
  if (i < n && (w[i] == 'e' || w[i] == 'E')) {
    integer = false;
    ++i;
    if (i < n && (w[i] == '+' || w[i] == '-'))
      ++i;
    size_t exp_digits = 0;
    while (digit(i)) {
      ++i;
      ++exp_digits;
    }
    if (exp_digits == 0)
      return false;
  }
  return i == n;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    if (x >= 'A' && x <= 'Z')
      x = static_cast<char>(x - 'A' + 'a');
    if (x != b[i])
      return false;
  }
  return true;
}

bool is_keyword(const token& t) {
  return t.type == tok::word && (t.value == "AND" || t.value == "OR" || t.value == "NOT");
}

// -- parser -------------------------------------------------------------------

class parser {
public:
  explicit parser(std::string_view text) : toks_(tokenize(text)) {}

  node parse() {
    node root = parse_or();
    const token& t = peek();
    if (t.type == tok::rparen)
      fail(t.pos, "unbalanced parenthesis", "no \"(\" matches this \")\"");
    if (t.type != tok::end)
      fail(t.pos, "unexpected " + echo(t), "expected AND, OR or the end of the filter");
    return root;
  }

private:
  const token& peek() const {
    return toks_[pos_];
  }

  token& take() {
    token& t = toks_[pos_];
    if (t.type != tok::end)
      ++pos_;
    return t;
  }

  bool is_word(std::string_view w) const {
    return peek().type == tok::word && peek().value == w;
  }

  /// Fails unless the next token can start a term (after AND, OR, NOT, "-").
  void expect_term_after(const token& kw) {
    const token& t = peek();
    if (t.type == tok::end || t.type == tok::rparen || t.type == tok::op ||
        (t.type == tok::word && (t.value == "AND" || t.value == "OR")))
      fail(t.pos, "expected an expression after " + quote(kw.raw));
  }

  node parse_or() {
    node first = parse_and();
    if (!is_word("OR"))
      return first;
    node n;
    n.type = node::kind::any_of;
    n.children.push_back(std::move(first));
    while (is_word("OR")) {
      const token& kw = take();
      expect_term_after(kw);
      n.children.push_back(parse_and());
    }
    return n;
  }

  bool starts_term() const {
    const token& t = peek();
    return t.type == tok::lparen || t.type == tok::string ||
           (t.type == tok::word && t.value != "OR" && t.value != "AND");
  }

  node parse_and() {
    node first = parse_unary();
    node n;
    n.type = node::kind::all_of;
    n.children.push_back(std::move(first));
    while (true) {
      if (is_word("AND")) {
        const token& kw = take();
        expect_term_after(kw);
      } else if (!starts_term()) {
        break;
      }
      n.children.push_back(parse_unary());
    }
    if (n.children.size() == 1)
      return std::move(n.children.front());
    return n;
  }

  node parse_unary() {
    // Consecutive negations fold into a parity, so they need no recursion.
    bool negate = false;
    while (true) {
      token& t = toks_[pos_];
      if (t.type != tok::word)
        break;
      if (t.value == "NOT") {
        const token& kw = take();
        expect_term_after(kw);
        negate = !negate;
        continue;
      }
      if (t.value.front() == '-') {
        negate = !negate;
        if (t.value.size() == 1) {
          const token& kw = take();
          expect_term_after(kw);
        } else {
          // `-kind = x`: the rest of the word is the field.
          t.value.erase(0, 1);
          t.raw.remove_prefix(1);
          ++t.pos;
        }
        continue;
      }
      break;
    }
    node inner = parse_primary();
    if (!negate)
      return inner;
    node n;
    n.type = node::kind::negation;
    n.children.push_back(std::move(inner));
    return n;
  }

  node parse_primary() {
    const token& t = peek();
    if (t.type == tok::lparen) {
      const size_t open = t.pos;
      if (++depth_ > max_depth)
        fail(open, "parentheses nested deeper than " + std::to_string(max_depth));
      take();
      if (peek().type == tok::rparen)
        fail(peek().pos, "empty parentheses", "expected an expression inside \"()\"");
      node inner = parse_or();
      const token& close = peek();
      if (close.type == tok::end)
        fail(open, "unbalanced parenthesis", "this \"(\" is never closed");
      if (close.type != tok::rparen)
        fail(close.pos, "unexpected " + echo(close), "expected AND, OR or \")\"");
      take();
      --depth_;
      return inner;
    }
    return parse_comparison();
  }

  node parse_comparison() {
    const token& f = take();
    switch (f.type) {
      case tok::end:
        fail(f.pos, "expected a field, \"(\" or NOT");
      case tok::rparen:
        fail(f.pos, "unbalanced parenthesis", "no \"(\" matches this \")\"");
      case tok::word:
        break;
      default:
        fail(f.pos, "unexpected " + echo(f), "expected a field, \"(\" or NOT");
    }
    if (is_keyword(f))
      fail(f.pos, "unexpected " + echo(f), "expected a field, \"(\" or NOT");

    node n;
    n.type = node::kind::comparison;
    bool map_keys = false;
    resolve_field(f, n, map_keys);

    const token& o = take();
    if (o.type != tok::op)
      fail(o.pos, "expected an operator (=, !=, <, <=, >, >= or :) after " + quote(f.raw));
    n.op = o.op;

    const token& v = peek();
    if (n.op == op_id::has && v.type == tok::word && v.value == "*") {
      take();
      n.op = op_id::present;
      if (map_keys)
        n.key.clear();  // `attributes:*`: the map has any key
      return n;
    }
    if (v.type != tok::word && v.type != tok::string)
      fail(v.pos, std::string{"expected a value after \""} + op_text(n.op) + "\"");
    if (is_keyword(v))
      fail(v.pos, std::string{"expected a value after \""} + op_text(n.op) + "\"",
           "quote " + quote(v.value) + " to compare with the word");
    take();

    if (map_keys) {
      // `attributes:fleet` is `attributes.fleet:*`.
      if (n.op != op_id::has)
        fail(o.pos, quote(f.value) + " needs a key",
             "use " + f.value + ".<key> " + op_text(n.op) + " value, or " + f.value + ":<key>");
      n.key = v.value;
      n.op = op_id::present;
      return n;
    }
    set_literal(v, n);
    if (n.field == field_id::connectivity)
      check_connectivity(v, n);
    return n;
  }

  static void resolve_field(const token& f, node& n, bool& map_keys) {
    const std::string& name = f.value;
    struct simple {
      std::string_view name;
      field_id id;
    };
    static constexpr simple simple_fields[] = {
        {"asset_id", field_id::asset_id},
        {"aggregate_id", field_id::asset_id},
        {"kind", field_id::kind},
        {"tenant", field_id::tenant},
        {"version", field_id::version},
        {"applied_records", field_id::applied_records},
        {"connectivity", field_id::connectivity},
        {"state", field_id::alert_state},
        {"severity", field_id::alert_severity},
        {"property", field_id::alert_property},
        {"detector", field_id::alert_detector},
        {"health", field_id::health},
    };
    for (const auto& s : simple_fields) {
      if (name == s.name) {
        n.field = s.id;
        return;
      }
    }
    struct mapped {
      std::string_view name;
      field_id id;
      field_id keys;
    };
    static constexpr mapped map_fields[] = {
        {"attributes", field_id::attribute, field_id::attribute_keys},
        {"reported", field_id::reported, field_id::reported_keys},
        {"desired", field_id::desired, field_id::desired_keys},
        {"anomaly", field_id::anomaly, field_id::anomaly_keys},
        {"quality", field_id::quality, field_id::quality_keys},
        // An aggregate's measures, as ListAggregates presents them.
        {"measures", field_id::reported, field_id::reported_keys},
    };
    for (const auto& m : map_fields) {
      std::string_view sv = name;
      if (sv == m.name) {
        n.field = m.keys;
        map_keys = true;
        return;
      }
      if (sv.size() > m.name.size() && sv.starts_with(m.name) && sv[m.name.size()] == '.') {
        n.field = m.id;
        n.key.assign(sv.substr(m.name.size() + 1));
        if (n.key.empty())
          fail(f.pos + f.raw.size(), "expected a key after " + quote(std::string{m.name} + "."));
        return;
      }
    }
    if (name == "and" || name == "or" || name == "not")
      fail(f.pos, "unknown field " + quote(f.raw), "keywords AND, OR and NOT are uppercase");
    fail(f.pos, "unknown field " + quote(f.raw), field_list);
  }

  static void set_literal(const token& v, node& n) {
    if (v.type == tok::string) {
      n.lit_type = literal_type::text;
      n.lit_text = v.value;
      n.prefix = v.prefix;
      return;
    }
    const std::string& w = v.value;
    if (w == "true" || w == "false") {
      n.lit_type = literal_type::boolean;
      n.lit_text = w;
      n.num.is_int = true;
      n.num.i = w == "true" ? 1 : 0;
      n.num.d = static_cast<double>(n.num.i);
      return;
    }
    bool integer = false;
    if (is_number_syntax(w, integer)) {
      std::string_view digits = w;
      if (digits.front() == '+')
        digits.remove_prefix(1);
      const char* first = digits.data();
      const char* last = first + digits.size();
      auto [pd, ecd] = std::from_chars(first, last, n.num.d);
      if (ecd != std::errc{} || pd != last)
        fail(v.pos, "number " + quote(w) + " out of range");
      if (integer) {
        auto [pi, eci] = std::from_chars(first, last, n.num.i);
        n.num.is_int = eci == std::errc{} && pi == last;
      }
      n.lit_type = literal_type::number;
      n.lit_text = w;
      return;
    }
    n.lit_type = literal_type::text;
    n.lit_text = w;
    n.prefix = v.prefix;
  }

  static void check_connectivity(const token& v, node& n) {
    if (n.lit_type == literal_type::text && !n.prefix) {
      if (iequals(n.lit_text, "online")) {
        n.lit_text = "online";
        return;
      }
      if (iequals(n.lit_text, "stale")) {
        n.lit_text = "stale";
        return;
      }
    }
    fail(v.pos, "invalid connectivity " + quote(v.raw), "expected online or stale");
  }

  std::vector<token> toks_;
  size_t pos_ = 0;
  size_t depth_ = 0;
};

// -- evaluation ---------------------------------------------------------------

struct eval_context {
  const twin& tw;
  int64_t now_ms;
  int64_t stale_after_ms;
  /// The alert evaluated (ListAlerts); null for a twin.
  const alert_view* alert = nullptr;
};

/// A member projection as the evaluator reads it.
struct member_context {
  const member_view& m;
  int64_t now_ms;
  int64_t stale_after_ms;
};

/// The value of a field in one twin, viewed without copying.
struct field_view {
  enum class state : uint8_t { missing, text, number } st = state::missing;
  std::string_view text;
  number num;
  /// A bool reads as 0/1 but its string form is true/false.
  bool is_bool = false;
};

field_view of_value(const value& v) {
  field_view out;
  switch (v.index()) {
    case 0:
      out.st = field_view::state::number;
      out.num.d = std::get<double>(v);
      break;
    case 1:
      out.st = field_view::state::number;
      out.num.is_int = true;
      out.num.i = std::get<int64_t>(v);
      out.num.d = static_cast<double>(out.num.i);
      break;
    case 2:
      out.st = field_view::state::number;
      out.is_bool = true;
      out.num.is_int = true;
      out.num.i = std::get<bool>(v) ? 1 : 0;
      out.num.d = static_cast<double>(out.num.i);
      break;
    default:
      out.st = field_view::state::text;
      out.text = std::get<std::string>(v);
  }
  return out;
}

field_view of_counter(uint64_t c) {
  field_view out;
  out.st = field_view::state::number;
  if (c <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    out.num.is_int = true;
    out.num.i = static_cast<int64_t>(c);
  }
  out.num.d = static_cast<double>(c);
  return out;
}

field_view of_text(std::string_view s) {
  field_view out;
  out.st = field_view::state::text;
  out.text = s;
  return out;
}

field_view lookup(const node& n, const eval_context& c) {
  const twin& tw = c.tw;
  switch (n.field) {
    case field_id::asset_id:
      return of_text(tw.asset_id);
    case field_id::kind:
      return of_text(tw.kind);
    case field_id::tenant:
      return of_text(tw.tenant);
    case field_id::version:
      return of_counter(tw.version);
    case field_id::applied_records:
      return of_counter(tw.applied_records);
    case field_id::connectivity:
      return of_text(connectivity_of(tw, c.now_ms, c.stale_after_ms) == connectivity::online
                         ? std::string_view{"online"}
                         : std::string_view{"stale"});
    case field_id::attribute: {
      auto i = tw.attributes.find(std::string_view{n.key});
      return i == tw.attributes.end() ? field_view{} : of_text(i->second);
    }
    case field_id::reported: {
      auto i = tw.reported.find(std::string_view{n.key});
      return i == tw.reported.end() ? field_view{} : of_value(i->second.val);
    }
    case field_id::desired: {
      auto i = tw.desired.find(std::string_view{n.key});
      return i == tw.desired.end() ? field_view{} : of_value(i->second);
    }
    case field_id::anomaly: {
      auto i = tw.analysis.find(std::string_view{n.key});
      if (i == tw.analysis.end())
        return {};
      field_view out;
      out.st = field_view::state::number;
      out.num.d = i->second.score;
      return out;
    }
    case field_id::quality: {
      field_view out;
      out.st = field_view::state::number;
      if (n.key == "score") {
        out.num.d = quality_score(tw, c.now_ms);
        return out;
      }
      auto i = tw.analysis.find(std::string_view{n.key});
      if (i == tw.analysis.end())
        return {};
      const auto flags = quality_flags(i->second.quality, last_report_ms(tw, i->first), c.now_ms);
      out.num.is_int = true;
      out.num.i = std::popcount(flags);
      out.num.d = static_cast<double>(out.num.i);
      return out;
    }
    case field_id::health: {
      field_view out;
      out.st = field_view::state::number;
      out.num.d = health_score(tw, c.now_ms);
      return out;
    }
    case field_id::alert_state:
      return c.alert ? of_text(alert_state_name(*c.alert->alert)) : field_view{};
    case field_id::alert_severity:
      return c.alert ? of_text(to_string(c.alert->alert->severity)) : field_view{};
    case field_id::alert_property:
      return c.alert ? of_text(c.alert->property) : field_view{};
    case field_id::alert_detector:
      return c.alert ? of_text(to_string(static_cast<anomaly_kind>(c.alert->alert->kind)))
                     : field_view{};
    default:
      return {};
  }
}

field_view lookup(const node& n, const member_context& c) {
  const member_values& v = c.m.values;
  switch (n.field) {
    case field_id::asset_id:
      return of_text(c.m.id);
    case field_id::kind:
      return of_text(v.kind);
    case field_id::tenant:
      return of_text(v.tenant);
    case field_id::version:
      return of_counter(v.version);
    case field_id::connectivity:
      return of_text(v.last_seen_ms != 0 && c.now_ms - v.last_seen_ms <= c.stale_after_ms
                         ? std::string_view{"online"}
                         : std::string_view{"stale"});
    case field_id::attribute: {
      const std::string* a = v.find_attribute(n.key);
      return a ? of_text(*a) : field_view{};
    }
    case field_id::reported: {
      const value* r = v.find_reported(n.key);
      return r ? of_value(*r) : field_view{};
    }
    case field_id::quality:
    case field_id::health: {
      // Projected under their reserved keys (member.hpp).
      if (n.field == field_id::quality && n.key != "score")
        return {};
      const value* r =
          v.find_reported(n.field == field_id::health ? member_health_key : member_quality_key);
      return r ? of_value(*r) : field_view{};
    }
    default:
      return {};
  }
}

template <class Map>
bool has_key(const Map& m, const std::string& key) {
  return key.empty() ? !m.empty() : m.find(std::string_view{key}) != m.end();
}

bool present(const node& n, const eval_context& c) {
  switch (n.field) {
    case field_id::asset_id:
      return !c.tw.asset_id.empty();
    case field_id::kind:
      return !c.tw.kind.empty();
    case field_id::tenant:
      return !c.tw.tenant.empty();
    case field_id::version:
    case field_id::applied_records:
    case field_id::connectivity:
      return true;
    case field_id::attribute:
    case field_id::attribute_keys:
      return has_key(c.tw.attributes, n.key);
    case field_id::reported:
    case field_id::reported_keys:
      return has_key(c.tw.reported, n.key);
    case field_id::desired:
    case field_id::desired_keys:
      return has_key(c.tw.desired, n.key);
    case field_id::anomaly:
    case field_id::anomaly_keys:
      if (n.key.empty())
        return std::any_of(c.tw.analysis.begin(), c.tw.analysis.end(),
                           [](const auto& kv) { return anomalous(kv.second); });
      if (auto i = c.tw.analysis.find(std::string_view{n.key}); i != c.tw.analysis.end())
        return anomalous(i->second);
      return false;
    case field_id::quality:
    case field_id::quality_keys: {
      auto flagged = [&](const auto& kv) {
        return quality_flags(kv.second.quality, last_report_ms(c.tw, kv.first), c.now_ms) != 0;
      };
      if (n.key.empty())
        return std::any_of(c.tw.analysis.begin(), c.tw.analysis.end(), flagged);
      if (n.key == "score")
        return true;
      if (auto i = c.tw.analysis.find(std::string_view{n.key}); i != c.tw.analysis.end())
        return flagged(*i);
      return false;
    }
    case field_id::health:
      return true;
    case field_id::alert_state:
    case field_id::alert_severity:
    case field_id::alert_property:
    case field_id::alert_detector:
      return c.alert != nullptr;
  }
  return false;
}

bool present(const node& n, const member_context& c) {
  const member_values& v = c.m.values;
  switch (n.field) {
    case field_id::asset_id:
      return !c.m.id.empty();
    case field_id::kind:
      return !v.kind.empty();
    case field_id::tenant:
      return !v.tenant.empty();
    case field_id::version:
    case field_id::connectivity:
      return true;
    case field_id::attribute:
    case field_id::attribute_keys:
      return n.key.empty() ? !v.attributes.empty() : v.find_attribute(n.key) != nullptr;
    case field_id::reported:
    case field_id::reported_keys:
      return n.key.empty() ? !v.reported.empty() : v.find_reported(n.key) != nullptr;
    case field_id::health:
      return v.find_reported(member_health_key) != nullptr;
    case field_id::quality:
      return n.key == "score" && v.find_reported(member_quality_key) != nullptr;
    default:
      return false;
  }
}

bool holds(op_id op, std::partial_ordering ord) {
  switch (op) {
    case op_id::eq:
    case op_id::has:
      return ord == 0;
    case op_id::ne:
      return ord != 0;  // true for unordered (NaN)
    case op_id::lt:
      return ord < 0;
    case op_id::le:
      return ord <= 0;
    case op_id::gt:
      return ord > 0;
    case op_id::ge:
      return ord >= 0;
    case op_id::present:
      return false;
  }
  return false;
}

std::partial_ordering compare_numbers(const number& a, const number& b) {
  if (a.is_int && b.is_int)
    return a.i <=> b.i;
  return a.d <=> b.d;
}

/// Equality (or prefix match) of strings, for `=`, `:` and `!=`.
bool string_equality(const node& n, std::string_view field) {
  const std::string_view lit = n.lit_text;
  const bool eq = n.prefix ? field.starts_with(lit.substr(0, lit.size() - 1)) : field == lit;
  return n.op == op_id::ne ? !eq : eq;
}

template <class Context>
bool compare(const node& n, const Context& c) {
  if (n.op == op_id::present)
    return present(n, c);
  const field_view f = lookup(n, c);
  if (f.st == field_view::state::missing)
    return n.op == op_id::ne;
  const bool equality = n.op == op_id::eq || n.op == op_id::has || n.op == op_id::ne;
  const bool lit_numeric = n.lit_type != literal_type::text;
  if (f.st == field_view::state::number && lit_numeric)
    return holds(n.op, compare_numbers(f.num, n.num));
  if (f.st == field_view::state::text && !lit_numeric) {
    if (n.prefix && equality)
      return string_equality(n, f.text);
    return holds(n.op, f.text.compare(n.lit_text) <=> 0);
  }
  // Mismatched types: only equality, on the field's string form.
  if (!equality)
    return false;
  if (f.st == field_view::state::text)
    return string_equality(n, f.text);
  char buf[40];
  std::string_view form;
  if (f.is_bool) {
    form = f.num.i != 0 ? "true" : "false";
  } else {
    auto r = f.num.is_int ? std::to_chars(buf, buf + sizeof(buf), f.num.i)
                          : std::to_chars(buf, buf + sizeof(buf), f.num.d);
    form = std::string_view{buf, static_cast<size_t>(r.ptr - buf)};
  }
  return string_equality(n, form);
}

template <class Context>
bool eval(const node& n, const Context& c) {
  switch (n.type) {
    case node::kind::all_of:
      for (const auto& child : n.children)
        if (!eval(child, c))
          return false;
      return true;
    case node::kind::any_of:
      for (const auto& child : n.children)
        if (eval(child, c))
          return true;
      return false;
    case node::kind::negation:
      return !eval(n.children.front(), c);
    case node::kind::comparison:
      return compare(n, c);
  }
  return false;
}

}  // namespace

const char* alert_state_name(const alert_state& a) {
  return !a.active ? "cleared" : a.acknowledged ? "acknowledged" : "open";
}

bool anomalous(const property_analysis& a) {
  return a.alert.active || a.score >= 0.5;
}

std::optional<filter_error> filter::parse(std::string_view text, filter& out) {
  if (text.size() > max_filter_bytes) {
    return filter_error{max_filter_bytes, "filter too long at " + std::to_string(max_filter_bytes) +
                                              ": it has " + std::to_string(text.size()) +
                                              " bytes, the limit is " +
                                              std::to_string(max_filter_bytes)};
  }
  bool blank = true;
  for (char c : text)
    if (!is_space(c)) {
      blank = false;
      break;
    }
  if (blank) {
    out.root_.reset();
    out.text_.assign(text);
    return std::nullopt;
  }
  try {
    parser p{text};
    auto root = std::make_shared<const filter_node>(p.parse());
    out.root_ = std::move(root);
    out.text_.assign(text);
    return std::nullopt;
  } catch (parse_failure& f) {
    return std::move(f.err);
  }
}

bool filter::matches(const twin& tw, int64_t now_ms, int64_t stale_after_ms) const {
  if (!root_)
    return true;
  return eval(*root_, eval_context{tw, now_ms, stale_after_ms});
}

bool filter::matches(const alert_view& a, int64_t now_ms, int64_t stale_after_ms) const {
  if (!root_)
    return true;
  return eval(*root_, eval_context{*a.tw, now_ms, stale_after_ms, &a});
}

bool filter::matches(const member_view& m, int64_t now_ms, int64_t stale_after_ms) const {
  if (!root_)
    return true;
  return eval(*root_, member_context{m, now_ms, stale_after_ms});
}

namespace {

void collect(const filter_node& n, field_set& out) {
  if (n.type != filter_node::kind::comparison) {
    for (const auto& c : n.children)
      collect(c, out);
    return;
  }
  switch (n.field) {
    case field_id::connectivity:
      out.connectivity = true;
      break;
    case field_id::attribute:
    case field_id::attribute_keys:
      if (n.key.empty())
        out.all_attributes = true;
      else
        out.attributes.insert(n.key);
      break;
    case field_id::reported:
    case field_id::reported_keys:
      if (n.key.empty())
        out.all_reported = true;
      else
        out.reported.insert(n.key);
      break;
    case field_id::quality:
      if (n.key == "score")
        out.reported.emplace(member_quality_key);
      break;
    case field_id::health:
      out.reported.emplace(member_health_key);
      break;
    default:
      break;
  }
}

void collect_properties(const filter_node& n, std::set<std::string, std::less<>>& out) {
  if (n.type != filter_node::kind::comparison) {
    for (const auto& c : n.children)
      collect_properties(c, out);
    return;
  }
  switch (n.field) {
    case field_id::reported:
    case field_id::desired:
    case field_id::anomaly:
      out.insert(n.key);
      break;
    case field_id::quality:
      if (n.key != "score")
        out.insert(n.key);
      break;
    default:
      break;
  }
}

}  // namespace

void filter::properties_compared(std::set<std::string, std::less<>>& out) const {
  if (root_)
    collect_properties(*root_, out);
}

void filter::collect_fields(field_set& out) const {
  if (root_)
    collect(*root_, out);
}

bool filter::reads_connectivity() const {
  field_set f;
  collect_fields(f);
  return f.connectivity;
}

}  // namespace fleettwin::core
