// Socket setup for listeners.
#include "server/listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace edge {
namespace {

// exclusive: bind without SO_REUSEPORT, to learn whether another process already listens there
// (with SO_REUSEPORT a second edge would silently share the port and split the traffic).
int open_one(const ListenConfig& l, int port, bool exclusive = false) {
  int fd = ::socket(l.ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (!exclusive) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_storage ss{};
  socklen_t len;
  if (l.ipv6) {
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET6, l.host.c_str(), &a->sin6_addr);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, l.host.c_str(), &a->sin_addr);
    len = sizeof *a;
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
      (!exclusive && ::listen(fd, 4096) != 0)) {
    int e = errno;
    ::close(fd);
    throw std::runtime_error("cannot listen on " + l.address + ": " + std::strerror(e));
  }
  return fd;
}

int port_of(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

}  // namespace

std::vector<std::vector<int>> open_listeners(const std::vector<ListenConfig>& listeners,
                                             unsigned count, std::vector<int>& bound_ports) {
  std::vector<std::vector<int>> fds;
  try {
    for (const ListenConfig& l : listeners) {
      fds.emplace_back();
      int port = l.port;
      if (port != 0) ::close(open_one(l, port, /*exclusive=*/true));
      for (unsigned i = 0; i < count; ++i) {
        int fd = open_one(l, port);
        if (i == 0) port = port_of(fd);
        fds.back().push_back(fd);
      }
      bound_ports.push_back(port);
    }
  } catch (...) {
    for (auto& v : fds)
      for (int fd : v) ::close(fd);
    throw;
  }
  return fds;
}

}  // namespace edge
