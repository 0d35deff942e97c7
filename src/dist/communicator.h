// The distributed layer: a group of ranks that exchange buffers. Training reduces its
// gradients through this interface before every optimizer step, so data-parallel training is
// the same trainer with another Communicator behind it (MPI, later); tensor parallelism will
// use all_gather and send/recv the same way.
//
// Every collective is called by every rank in the same order with the same sizes. Buffers are
// raw bytes except where the operation needs the element type (reductions are of f32, summed
// in rank order so every rank gets bit-identical results whatever the transport).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace frugal {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // data[i] = sum over ranks of data[i] (n floats), in place on every rank.
  virtual void all_reduce_sum(float* data, int64_t n) = 0;
  // recv holds size() * bytes: rank r's `send` at offset r * bytes, on every rank.
  virtual void all_gather(const void* send, void* recv, size_t bytes) = 0;
  // Point to point; a send is matched by the recv of the same size on `peer`.
  virtual void send(const void* data, size_t bytes, int peer) = 0;
  virtual void recv(void* data, size_t bytes, int peer) = 0;
  // Returns when every rank has called it.
  virtual void barrier() = 0;
};

// One process, one rank: collectives are identities, a message sent to oneself is queued
// until received. Used by single-machine training and by tests of code written against the
// interface.
std::unique_ptr<Communicator> make_single_process_communicator();

}  // namespace frugal
