#include "actors/core/aggregate_kind.hpp"
#include "actors/core/text.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <set>
#include <system_error>

namespace fleettwin::core {

const char* to_string(measure_fn f) {
  switch (f) {
    case measure_fn::count:
      return "count";
    case measure_fn::sum:
      return "sum";
    case measure_fn::mean:
      return "mean";
    case measure_fn::min:
      return "min";
    case measure_fn::max:
      return "max";
    case measure_fn::percentile:
      return "percentile";
  }
  return "?";
}

namespace {

bool is_ident_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

bool is_ident_char(char c) {
  return is_ident_start(c) || (c >= '0' && c <= '9');
}

bool is_field_char(char c) {
  return is_ident_char(c) || c == '.' || c == ':' || c == '/' || c == '-';
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

struct compile_failure {
  std::string message;
};

/// Compiles one measure expression against the kind compiled so far.
class expression_parser {
public:
  expression_parser(std::string_view text, std::string_view measure, compiled_kind& kind,
                    const std::map<std::string, uint32_t, std::less<>>& measure_index)
      : text_(text), measure_(measure), kind_(kind), measure_index_(measure_index) {}

  expr_node parse() {
    expr_node root = parse_sum();
    skip_space();
    if (pos_ < text_.size()) {
      if (text_[pos_] == ')')
        fail("unbalanced parenthesis: no \"(\" matches this \")\"");
      fail("unexpected \"" + std::string{text_.substr(pos_, 1)} +
           "\": expected an operator (+ - * /) or the end");
    }
    return root;
  }

  /// Measures this expression refers to.
  const std::set<uint32_t>& references() const {
    return refs_;
  }

private:
  [[noreturn]] void fail(const std::string& what) const {
    throw compile_failure{"measure \"" + std::string{measure_} + "\" at position " +
                          std::to_string(pos_) + ": " + what};
  }

  void skip_space() {
    while (pos_ < text_.size() && is_space(text_[pos_]))
      ++pos_;
  }

  bool take(char c) {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  expr_node binary(expr_node::op op, expr_node lhs, expr_node rhs) {
    expr_node n;
    n.type = op;
    n.args.push_back(std::move(lhs));
    n.args.push_back(std::move(rhs));
    return n;
  }

  expr_node parse_sum() {
    expr_node lhs = parse_product();
    while (true) {
      if (take('+'))
        lhs = binary(expr_node::op::add, std::move(lhs), parse_product());
      else if (take('-'))
        lhs = binary(expr_node::op::sub, std::move(lhs), parse_product());
      else
        return lhs;
    }
  }

  expr_node parse_product() {
    expr_node lhs = parse_factor();
    while (true) {
      if (take('*'))
        lhs = binary(expr_node::op::mul, std::move(lhs), parse_factor());
      else if (take('/'))
        lhs = binary(expr_node::op::div, std::move(lhs), parse_factor());
      else
        return lhs;
    }
  }

  expr_node parse_factor() {
    if (++depth_ > 32)
      fail("expression nested deeper than 32");
    expr_node out = parse_factor_inner();
    --depth_;
    return out;
  }

  expr_node parse_factor_inner() {
    skip_space();
    if (pos_ >= text_.size())
      fail(
          "expected a number, a function such as sum(reported.power), a measure or "
          "attributes.<key>");
    const char c = text_[pos_];
    if (c == '-') {
      ++pos_;
      expr_node n;
      n.type = expr_node::op::neg;
      n.args.push_back(parse_factor());
      return n;
    }
    if (c == '(') {
      ++pos_;
      expr_node inner = parse_sum();
      if (!take(')'))
        fail("expected \")\"");
      return inner;
    }
    if ((c >= '0' && c <= '9') || c == '.')
      return parse_number();
    if (!is_ident_start(c))
      fail("unexpected \"" + std::string(1, c) + "\"");
    const size_t start = pos_;
    while (pos_ < text_.size() && (is_ident_char(text_[pos_]) || text_[pos_] == '.'))
      ++pos_;
    std::string_view word = text_.substr(start, pos_ - start);
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == '(') {
      ++pos_;
      return parse_call(word, start);
    }
    if (word.starts_with("attributes.")) {
      expr_node n;
      n.type = expr_node::op::attribute;
      n.key = std::string{word.substr(11)};
      if (n.key.empty())
        fail("expected a key after \"attributes.\"");
      return n;
    }
    auto it = measure_index_.find(word);
    if (it == measure_index_.end()) {
      pos_ = start;
      std::string known;
      for (const auto& [name, index] : measure_index_)
        if (name != measure_)
          known += (known.empty() ? "" : ", ") + name;
      fail("unknown name \"" + std::string{word} + "\": expected a measure of kind \"" +
           kind_.def.name + "\"" + (known.empty() ? "" : " (" + known + ")") +
           ", attributes.<key>, a number or a function: count(), sum(), mean(), min(), "
           "max(), p50(), p90(), p95(), p99(), percentile()");
    }
    if (word == measure_) {
      pos_ = start;
      fail("measure \"" + std::string{word} + "\" refers to itself");
    }
    refs_.insert(it->second);
    expr_node n;
    n.type = expr_node::op::measure;
    n.index = it->second;
    return n;
  }

  expr_node parse_number() {
    const size_t start = pos_;
    while (pos_ < text_.size() && ((text_[pos_] >= '0' && text_[pos_] <= '9') ||
                                   text_[pos_] == '.' || text_[pos_] == 'e' || text_[pos_] == 'E' ||
                                   ((text_[pos_] == '-' || text_[pos_] == '+') &&
                                    (text_[pos_ - 1] == 'e' || text_[pos_ - 1] == 'E'))))
      ++pos_;
    expr_node n;
    n.type = expr_node::op::number;
    auto digits = text_.substr(start, pos_ - start);
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n.number);
    if (ec != std::errc{} || p != digits.data() + digits.size() || !std::isfinite(n.number)) {
      pos_ = start;
      fail("invalid number \"" + std::string{digits} + "\"");
    }
    return n;
  }

  /// The text up to the ")" that closes the call (quotes and nested
  /// parentheses of a filter skipped); the position moves past it.
  std::string_view call_body(size_t open) {
    int depth = 0;
    char quote = 0;
    for (size_t i = pos_; i < text_.size(); ++i) {
      const char c = text_[i];
      if (quote) {
        if (c == '\\')
          ++i;
        else if (c == quote)
          quote = 0;
        continue;
      }
      if (c == '"' || c == '\'') {
        quote = c;
      } else if (c == '(') {
        ++depth;
      } else if (c == ')') {
        if (depth-- == 0) {
          auto body = text_.substr(pos_, i - pos_);
          pos_ = i + 1;
          return body;
        }
      }
    }
    pos_ = open;
    fail("unbalanced parenthesis: this call is never closed");
  }

  /// Splits "<head> where <filter>" at a `where` outside quotes and parentheses.
  static std::pair<std::string_view, std::string_view> split_where(std::string_view body,
                                                                   bool& found) {
    found = false;
    char quote = 0;
    int depth = 0;
    for (size_t i = 0; i + 5 <= body.size(); ++i) {
      const char c = body[i];
      if (quote) {
        if (c == '\\')
          ++i;
        else if (c == quote)
          quote = 0;
        continue;
      }
      if (c == '"' || c == '\'') {
        quote = c;
        continue;
      }
      depth += c == '(' ? 1 : c == ')' ? -1 : 0;
      if (depth != 0 || body.substr(i, 5) != "where")
        continue;
      const bool left = i == 0 || is_space(body[i - 1]);
      const bool right = i + 5 == body.size() || is_space(body[i + 5]) || body[i + 5] == '(';
      if (left && right) {
        found = true;
        return {body.substr(0, i), body.substr(i + 5)};
      }
    }
    return {body, {}};
  }

  filter parse_filter(std::string_view text, size_t body_at) {
    filter f;
    if (auto err = filter::parse(trim(text), f)) {
      pos_ = body_at;
      fail("invalid filter \"" + std::string{trim(text)} + "\": " + err->message);
    }
    return f;
  }

  uint32_t series_for(std::string field, filter where, bool ordered) {
    for (uint32_t i = 0; i < kind_.series.size(); ++i) {
      auto& s = kind_.series[i];
      if (s.field == field && s.where.text() == where.text()) {
        s.ordered |= ordered;
        return i;
      }
    }
    if (kind_.series.size() >= max_series_per_kind)
      fail("more than " + std::to_string(max_series_per_kind) +
           " distinct (field, filter) pairs in one kind");
    series_spec s;
    s.field = std::move(field);
    s.time_dependent = where.reads_connectivity();
    s.where = std::move(where);
    s.ordered = ordered;
    s.where.collect_fields(kind_.fields);
    if (!s.field.empty())
      kind_.fields.reported.insert(s.field);
    kind_.time_dependent |= s.time_dependent;
    kind_.series.push_back(std::move(s));
    return static_cast<uint32_t>(kind_.series.size() - 1);
  }

  expr_node parse_call(std::string_view fn_name, size_t at) {
    const size_t body_at = pos_;
    std::string_view body = call_body(at);
    call_spec call;
    bool ordered = false;
    double quantile = 0;
    if (fn_name == "count") {
      call.fn = measure_fn::count;
      std::string_view f = trim(body);
      if (f.starts_with("where") && (f.size() == 5 || is_space(f[5]) || f[5] == '('))
        f.remove_prefix(5);
      call.series = series_for({}, parse_filter(f, body_at), false);
      return call_node(call);
    }
    if (fn_name == "sum")
      call.fn = measure_fn::sum;
    else if (fn_name == "mean" || fn_name == "avg")
      call.fn = measure_fn::mean;
    else if (fn_name == "min")
      call.fn = measure_fn::min;
    else if (fn_name == "max")
      call.fn = measure_fn::max;
    else if (fn_name == "p50" || fn_name == "p90" || fn_name == "p95" || fn_name == "p99") {
      call.fn = measure_fn::percentile;
      quantile = (fn_name[1] - '0') * 0.1 + (fn_name[2] - '0') * 0.01;
    } else if (fn_name == "percentile")
      call.fn = measure_fn::percentile;
    else {
      pos_ = at;
      fail("unknown function \"" + std::string{fn_name} +
           "\": expected count, sum, mean, avg, min, max, p50, p90, p95, p99 or percentile");
    }
    ordered = call.fn == measure_fn::min || call.fn == measure_fn::max ||
              call.fn == measure_fn::percentile;
    bool has_where = false;
    auto [head, where] = split_where(body, has_where);
    head = trim(head);
    if (fn_name == "percentile") {
      auto comma = head.find(',');
      if (comma == std::string_view::npos) {
        pos_ = body_at;
        fail("percentile needs a field and a quantile: percentile(reported.speed, 0.9)");
      }
      auto q = trim(head.substr(comma + 1));
      head = trim(head.substr(0, comma));
      auto [p, ec] = std::from_chars(q.data(), q.data() + q.size(), quantile);
      if (ec != std::errc{} || p != q.data() + q.size() || !(quantile > 0 && quantile <= 1)) {
        pos_ = body_at;
        fail("invalid quantile \"" + std::string{q} + "\": expected a number in (0, 1]");
      }
    }
    if (head.empty()) {
      pos_ = body_at;
      fail(std::string{fn_name} + " needs a field, e.g. " + std::string{fn_name} +
           "(reported.power)");
    }
    for (char c : head)
      if (!is_field_char(c)) {
        pos_ = body_at;
        fail(
            "invalid field \"" + std::string{head} + "\" in " + std::string{fn_name} +
            ": expected reported.<property>, quality.score or health, optionally followed by where "
            "<filter>");
      }
    std::string field{head};
    if (field.starts_with("reported."))
      field.erase(0, 9);
    else if (field == "quality.score")  // the analytics' verdicts (member.hpp)
      field = member_quality_key;
    else if (field == "health")
      field = member_health_key;
    if (field.empty() || field.starts_with("attributes.") || field.starts_with("desired.") ||
        field.find('.') == 0) {
      pos_ = body_at;
      fail(std::string{fn_name} + " reads a reported property of the member twins: got \"" +
           std::string{head} + "\"");
    }
    filter f;
    if (has_where)
      f = parse_filter(where, body_at);
    call.series = series_for(std::move(field), std::move(f), ordered);
    call.quantile = quantile;
    return call_node(call);
  }

  expr_node call_node(const call_spec& call) {
    uint32_t index = 0;
    for (; index < kind_.calls.size(); ++index) {
      const auto& c = kind_.calls[index];
      if (c.fn == call.fn && c.series == call.series && c.quantile == call.quantile)
        break;
    }
    if (index == kind_.calls.size())
      kind_.calls.push_back(call);
    expr_node n;
    n.type = expr_node::op::call;
    n.index = index;
    return n;
  }

  std::string_view text_;
  std::string_view measure_;
  compiled_kind& kind_;
  const std::map<std::string, uint32_t, std::less<>>& measure_index_;
  std::set<uint32_t> refs_;
  size_t pos_ = 0;
  size_t depth_ = 0;
};

std::optional<double> read_attribute(const measure_inputs& in, const std::string& key) {
  if (!in.attributes)
    return std::nullopt;
  auto it = in.attributes->find(key);
  if (it == in.attributes->end())
    return std::nullopt;
  std::string_view s = trim(it->second);
  double d = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
  if (ec != std::errc{} || p != s.data() + s.size() || !std::isfinite(d))
    return std::nullopt;
  return d;
}

std::optional<double> finite(double d) {
  return std::isfinite(d) ? std::optional<double>{d} : std::nullopt;
}

std::optional<double> eval(const expr_node& n, const compiled_kind& kind,
                           const series_reader& series, const measure_inputs& in,
                           const std::vector<std::optional<double>>& measures) {
  using op = expr_node::op;
  switch (n.type) {
    case op::number:
      return n.number;
    case op::attribute:
      return read_attribute(in, n.key);
    case op::measure:
      return measures[n.index];
    case op::call: {
      const call_spec& c = kind.calls[n.index];
      const uint64_t count = series.count(c.series);
      switch (c.fn) {
        case measure_fn::count:
          return static_cast<double>(count);
        case measure_fn::sum:
          return count == 0 ? 0.0 : finite(series.sum(c.series));
        case measure_fn::mean:
          if (count == 0)
            return std::nullopt;
          return finite(series.sum(c.series) / static_cast<double>(count));
        case measure_fn::min:
          return series.min(c.series);
        case measure_fn::max:
          return series.max(c.series);
        case measure_fn::percentile:
          return series.percentile(c.series, c.quantile);
      }
      return std::nullopt;
    }
    case op::neg: {
      auto a = eval(n.args[0], kind, series, in, measures);
      return a ? std::optional<double>{-*a} : std::nullopt;
    }
    default:
      break;
  }
  auto a = eval(n.args[0], kind, series, in, measures);
  auto b = eval(n.args[1], kind, series, in, measures);
  if (!a || !b)
    return std::nullopt;
  switch (n.type) {
    case op::add:
      return finite(*a + *b);
    case op::sub:
      return finite(*a - *b);
    case op::mul:
      return finite(*a * *b);
    case op::div:
      return *b == 0 ? std::nullopt : finite(*a / *b);
    default:
      return std::nullopt;
  }
}

/// Series built from scratch over a list of members (the reference).
class scratch_series final : public series_reader {
public:
  explicit scratch_series(size_t n) : values_(n), counts_(n, 0), sums_(n, 0) {}

  void add(uint32_t s, std::optional<double> v) {
    ++counts_[s];
    if (v) {
      sums_[s] += *v;
      values_[s].push_back(*v);
    }
  }
  void sort() {
    for (auto& v : values_)
      std::sort(v.begin(), v.end());
  }

  uint64_t count(uint32_t s) const override {
    return counts_[s];
  }
  double sum(uint32_t s) const override {
    return sums_[s];
  }
  std::optional<double> min(uint32_t s) const override {
    return values_[s].empty() ? std::nullopt : std::optional<double>{values_[s].front()};
  }
  std::optional<double> max(uint32_t s) const override {
    return values_[s].empty() ? std::nullopt : std::optional<double>{values_[s].back()};
  }
  std::optional<double> percentile(uint32_t s, double q) const override {
    const auto& v = values_[s];
    if (v.empty())
      return std::nullopt;
    auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
    rank = std::clamp<size_t>(rank, 1, v.size());
    return v[rank - 1];
  }

private:
  std::vector<std::vector<double>> values_;
  std::vector<uint64_t> counts_;
  std::vector<double> sums_;
};

}  // namespace

std::optional<std::string> validate_kind_name(std::string_view name, std::string_view what) {
  if (name.empty())
    return std::string{what} + " is empty";
  if (name.size() > 64)
    return std::string{what} + " \"" + std::string{name} + "\" is longer than 64 bytes";
  if (!(name[0] >= 'a' && name[0] <= 'z'))
    return std::string{what} + " \"" + std::string{name} +
           "\" must start with a lowercase letter (a-z)";
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
      return std::string{what} + " \"" + std::string{name} +
             "\" may contain only a-z, 0-9, _ and -";
  return std::nullopt;
}

std::optional<std::string> compile_kind(const aggregate_kind& kind, compiled_kind& out) {
  out = compiled_kind{};
  out.def = kind;
  if (auto e = validate_kind_name(kind.name, "kind name"))
    return e;
  if (auto e = validate_kind_name(kind.collection, "collection of kind \"" + kind.name + "\""))
    return e;
  if (kind.member_relations.empty())
    return "kind \"" + kind.name +
           "\" has no member relations: name the relation types that make members, e.g. "
           "member_of";
  std::set<std::string_view> types;
  for (const auto& t : kind.member_relations) {
    if (auto e = validate_kind_name(t, "relation type"))
      return "kind \"" + kind.name + "\": " + *e;
    if (!types.insert(t).second)
      return "kind \"" + kind.name + "\": relation type \"" + t + "\" is listed twice";
  }
  if (kind.measures.size() > max_measures_per_kind)
    return "kind \"" + kind.name + "\" has " + std::to_string(kind.measures.size()) +
           " measures; at most " + std::to_string(max_measures_per_kind) + " are allowed";
  std::map<std::string, uint32_t, std::less<>> index;
  for (uint32_t i = 0; i < kind.measures.size(); ++i) {
    const auto& name = kind.measures[i].first;
    bool ok = !name.empty() && is_ident_start(name[0]) && name.size() <= 64;
    for (char c : name)
      ok = ok && is_ident_char(c);
    if (!ok)
      return "kind \"" + kind.name + "\": measure name \"" + name +
             "\" must be an identifier (a letter or _, then letters, digits or _; at most 64)";
    if (name == "attributes" || name == member_twins_measure || name == members_measure)
      return "kind \"" + kind.name + "\": \"" + name + "\" is reserved and cannot name a measure";
    if (!index.emplace(name, i).second)
      return "kind \"" + kind.name + "\": measure \"" + name + "\" is declared twice";
  }
  std::vector<std::set<uint32_t>> refs(kind.measures.size());
  try {
    for (uint32_t i = 0; i < kind.measures.size(); ++i) {
      const auto& [name, text] = kind.measures[i];
      if (text.size() > max_expression_bytes)
        return "kind \"" + kind.name + "\": measure \"" + name + "\" is longer than " +
               std::to_string(max_expression_bytes) + " bytes";
      if (trim(text).empty())
        return "kind \"" + kind.name + "\": measure \"" + name + "\" has no expression";
      expression_parser p{text, name, out, index};
      compiled_measure m{name, text, p.parse()};
      refs[i] = p.references();
      out.measures.push_back(std::move(m));
    }
  } catch (compile_failure& f) {
    out = compiled_kind{};
    return "kind \"" + kind.name + "\": " + f.message;
  }
  // Evaluation order: each measure after those it refers to (a cycle is an error).
  std::vector<uint8_t> mark(kind.measures.size(), 0);  // 1 visiting, 2 done
  std::vector<std::string> stack;
  std::function<std::optional<std::string>(uint32_t)> visit;
  visit = [&](uint32_t i) -> std::optional<std::string> {
    if (mark[i] == 2)
      return std::nullopt;
    if (mark[i] == 1) {
      std::string cycle;
      for (const auto& s : stack)
        cycle += s + " -> ";
      return "kind \"" + kind.name + "\": measures refer to each other in a cycle: " + cycle +
             kind.measures[i].first;
    }
    mark[i] = 1;
    stack.push_back(kind.measures[i].first);
    for (uint32_t r : refs[i])
      if (auto e = visit(r))
        return e;
    stack.pop_back();
    mark[i] = 2;
    out.order.push_back(i);
    return std::nullopt;
  };
  for (uint32_t i = 0; i < kind.measures.size(); ++i)
    if (auto e = visit(i)) {
      out = compiled_kind{};
      return e;
    }
  return std::nullopt;
}

std::vector<std::optional<double>> evaluate_measures(const compiled_kind& kind,
                                                     const series_reader& series,
                                                     const measure_inputs& in) {
  std::vector<std::optional<double>> values(kind.measures.size());
  for (uint32_t i : kind.order)
    values[i] = eval(kind.measures[i].root, kind, series, in, values);
  return values;
}

std::vector<std::optional<double>> recompute_measures(const compiled_kind& kind,
                                                      const std::vector<member_view>& twins,
                                                      const measure_inputs& in, int64_t now_ms,
                                                      int64_t stale_after_ms) {
  scratch_series series{kind.series.size()};
  for (const auto& m : twins) {
    for (uint32_t s = 0; s < kind.series.size(); ++s) {
      const auto& spec = kind.series[s];
      std::optional<double> v;
      if (!spec.field.empty()) {
        const value* r = m.values.find_reported(spec.field);
        if (!r)
          continue;
        v = as_number(*r);
        if (!v || std::isnan(*v))
          continue;
      }
      if (!spec.where.matches(m, now_ms, stale_after_ms))
        continue;
      series.add(s, v);
    }
  }
  series.sort();
  return evaluate_measures(kind, series, in);
}

}  // namespace fleettwin::core
