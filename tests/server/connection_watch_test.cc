// Finding a request's socket by its addresses, as cpp-httplib reports them, and noticing the
// peer's hang-up on it: over IPv4, and over a dual-stack IPv6 socket (--host ::), whose IPv4
// peers cpp-httplib writes as "::ffff:127.0.0.1". That spelling was never matched, so a server
// on :: never noticed an IPv4 client leave and generated its request to the end.
#include "server/connection_watch.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

namespace frugal::server {
namespace {

// A listening socket, one client connected to it over IPv4 loopback, and the accepted end.
struct Connection {
  int listener = -1, client = -1, accepted = -1;
  int server_port = 0, client_port = 0;
  ~Connection() {
    for (const int fd : {listener, client, accepted})
      if (fd >= 0) ::close(fd);
  }
};

int port_of(int fd) {
  sockaddr_storage a{};
  socklen_t n = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  return a.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port)
                                : ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port);
}

// Listens on 127.0.0.1 (dual_stack false) or on :: accepting IPv4 too; false when the machine
// cannot (no IPv6).
bool connect_ipv4_client(bool dual_stack, Connection& c) {
  c.listener = socket(dual_stack ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  if (c.listener < 0) return false;
  if (dual_stack) {
    const int no = 0;
    setsockopt(c.listener, IPPROTO_IPV6, IPV6_V6ONLY, &no, sizeof no);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    if (bind(c.listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return false;
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(c.listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return false;
  }
  if (listen(c.listener, 1) != 0) return false;
  c.server_port = port_of(c.listener);
  c.client = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  to.sin_port = htons(static_cast<uint16_t>(c.server_port));
  if (connect(c.client, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) return false;
  c.client_port = port_of(c.client);
  c.accepted = accept(c.listener, nullptr, nullptr);
  return c.accepted >= 0;
}

void expect_found_and_hang_up_noticed(Connection& c, const std::string& remote_addr) {
  const int fd = find_connection_socket(remote_addr, c.client_port, c.server_port);
  EXPECT_EQ(fd, c.accepted) << remote_addr;
  EXPECT_FALSE(connection_closed(fd));
  ::close(c.client);
  c.client = -1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!connection_closed(fd) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_TRUE(connection_closed(fd)) << remote_addr;
}

TEST(ConnectionWatch, FindsAnIpv4Peer) {
  Connection c;
  ASSERT_TRUE(connect_ipv4_client(false, c));
  expect_found_and_hang_up_noticed(c, "127.0.0.1");
}

TEST(ConnectionWatch, FindsAnIpv4PeerOfADualStackSocketAsCppHttplibWritesIt) {
  Connection c;
  if (!connect_ipv4_client(true, c)) GTEST_SKIP() << "no dual-stack IPv6 on this machine";
  expect_found_and_hang_up_noticed(c, "::ffff:127.0.0.1");
}

TEST(ConnectionWatch, AnAddressThatIsNoneIsNotFound) {
  EXPECT_EQ(find_connection_socket("not an address", 1, 2), -1);
  EXPECT_FALSE(connection_closed(-1));
}

}  // namespace
}  // namespace frugal::server
