#include "services/security/caller.hpp"

#include "actors/core/twin.hpp"

namespace fleettwin::security {

namespace {

bool plain(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == ':' || c == '@' || c == '/';
}

void percent_encode(std::string_view in, std::string& out) {
  static constexpr char hex[] = "0123456789ABCDEF";
  for (char c : in) {
    if (plain(c)) {
      out.push_back(c);
    } else {
      auto u = static_cast<unsigned char>(c);
      out.push_back('%');
      out.push_back(hex[u >> 4]);
      out.push_back(hex[u & 15]);
    }
  }
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      if (!plain(in[i]))
        return std::nullopt;
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size())
      return std::nullopt;
    int hi = hex_digit(in[i + 1]);
    int lo = hex_digit(in[i + 2]);
    if (hi < 0 || lo < 0)
      return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

}  // namespace

std::optional<std::string> forbidden(const caller& c, std::string_view method) {
  auto needed = required_role(method);
  if (!needed || c.granted >= *needed)
    return std::nullopt;
  return std::string{method} + " needs the role " + role_name(*needed) + "; '" + c.subject +
         "' has " + role_name(c.granted);
}

std::string encode_caller(const caller& c) {
  std::string out = "v1;";
  out += role_name(c.granted);
  out += c.read_sensitive ? ";s;" : ";-;";
  percent_encode(c.tenant, out);
  out.push_back(';');
  percent_encode(c.subject, out);
  return out;
}

std::optional<caller> decode_caller(std::string_view text) {
  constexpr std::string_view version = "v1;";
  if (text.substr(0, version.size()) != version)
    return std::nullopt;
  text.remove_prefix(version.size());
  auto first = text.find(';');
  if (first == std::string_view::npos)
    return std::nullopt;
  auto role_text = text.substr(0, first);
  auto flags = text.substr(first + 1, 2);
  if (flags != "s;" && flags != "-;")
    return std::nullopt;
  const bool sensitive = flags[0] == 's';
  text.remove_prefix(first + 3);
  first = text.find(';');
  if (first == std::string_view::npos)
    return std::nullopt;
  auto granted = highest_role({std::string{role_text}});
  auto tenant = percent_decode(text.substr(0, first));
  auto subject = percent_decode(text.substr(first + 1));
  if (!granted || !tenant || !subject)
    return std::nullopt;
  return caller{std::move(*subject), *granted, std::move(*tenant), sensitive};
}

std::optional<std::string> validate_tenant(std::string_view tenant) {
  return core::validate_name(tenant, core::limits{}, "tenant");
}

}  // namespace fleettwin::security
