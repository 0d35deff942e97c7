// Noticing a client that went away while its request waits in the queue or generates.
//
// cpp-httplib 0.11 (Debian 12) hands a handler the request but not its socket, and only finds
// out that the peer is gone when a write fails, which for a non-streamed request is after all
// the work is done. So the handler finds its socket among the process's descriptors by the
// connection's two addresses (unique for a live TCP connection, and the descriptor cannot be
// reused while the handler runs), and polls it for the peer's hang-up while it waits.
#pragma once

#include <string>

namespace frugal::server {

// The descriptor of the TCP connection (remote_addr:remote_port -> local_port), or -1.
int find_connection_socket(const std::string& remote_addr, int remote_port, int local_port);
// True when the peer closed or reset the connection (never blocks; false for fd -1).
bool connection_closed(int fd);

}  // namespace frugal::server
