#include "server/connection_watch.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <optional>

namespace frugal::server {
namespace {

// An address as 16 bytes, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), so the two spellings of
// one peer compare equal: cpp-httplib writes a dual-stack (--host ::) socket's IPv4 peers as
// "::ffff:127.0.0.1", and a plain IPv4 socket's as "127.0.0.1". Used to compare the text
// form, IPv4 peers of a server on :: were never found, and their hang-ups never noticed.
using Address = std::array<unsigned char, 16>;

Address mapped(const unsigned char* ipv4) {
  Address a{};
  a[10] = a[11] = 0xff;
  std::memcpy(a.data() + 12, ipv4, 4);
  return a;
}

std::optional<Address> parse_address(std::string text) {
  if (const size_t scope = text.find('%'); scope != std::string::npos) text.resize(scope);  // fe80::1%eth0
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    Address a;
    std::memcpy(a.data(), v6.s6_addr, 16);
    return a;
  }
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) return mapped(reinterpret_cast<const unsigned char*>(&v4));
  return std::nullopt;
}

// Address and port of a socket address.
bool describe(const sockaddr_storage& s, Address& address, int& port) {
  if (s.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&s);
    address = mapped(reinterpret_cast<const unsigned char*>(&in->sin_addr));
    port = ntohs(in->sin_port);
    return true;
  }
  if (s.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&s);
    std::memcpy(address.data(), in6->sin6_addr.s6_addr, 16);
    port = ntohs(in6->sin6_port);
    return true;
  }
  return false;
}

}  // namespace

int find_connection_socket(const std::string& remote_addr, int remote_port, int local_port) {
  const std::optional<Address> remote = parse_address(remote_addr);
  if (!remote) return -1;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int found = -1;
  while (const dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == dirfd(dir)) continue;
    struct stat st;
    if (fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_storage peer{}, local{};
    socklen_t peer_len = sizeof peer, local_len = sizeof local;
    if (getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) continue;
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &local_len) != 0) continue;
    Address peer_address{}, local_address{};
    int peer_port = 0, port = 0;
    if (!describe(peer, peer_address, peer_port) || !describe(local, local_address, port)) continue;
    if (peer_port == remote_port && port == local_port && peer_address == *remote) {
      found = static_cast<int>(fd);
      break;
    }
  }
  closedir(dir);
  return found;
}

bool connection_closed(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, POLLRDHUP, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

}  // namespace frugal::server
