// constmig userfaultfd addon (issue 5, item 1): an anonymous private mapping exposed to JavaScript as
// SharedArrayBuffers without copying, registered with userfaultfd in MISSING mode, with the calls a
// fault handler needs (wait for a fault or watch for faults on the event loop, install a page, install
// a zero page, wake, discard, close).
//
// Why V8 and not Node-API: Node-API in Node 20 cannot make a SharedArrayBuffer over memory it did not
// allocate (napi_create_external_arraybuffer makes a plain ArrayBuffer, which cannot be shared with a
// worker). v8::SharedArrayBuffer::NewBackingStore(data, length, deleter, ...) can, and a SAB posted to
// a worker shares that backing store. The addon is built on install against the running Node, so the
// V8 ABI is not a concern; NODE_MODULE_INIT makes it context-aware, so it loads in worker threads.
//
// Regions live in a process-wide table keyed by a small integer id: every thread (isolate) that loads
// the addon sees the same regions, so the id and the SABs can be posted to a worker and the fault
// handler can run on any thread. JavaScript never sees an address, only offsets that are checked
// against the region.

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <node.h>
#include <uv.h>
#include <v8.h>

#include "export-function.h"

#include <vector>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

namespace {

using v8::Array;
using v8::ArrayBufferView;
using v8::BackingStore;
using v8::Context;
using v8::Exception;
using v8::FunctionCallbackInfo;
using v8::Integer;
using v8::Isolate;
using v8::Local;
using v8::NewStringType;
using v8::Null;
using v8::Number;
using v8::Object;
using v8::SharedArrayBuffer;
using v8::String;
using v8::Value;

const size_t kPage = 4096;

// ---------------------------------------------------------------------------------------------------
// The mapping: owned jointly by the region (until close) and by every SharedArrayBuffer over it (until
// the garbage collector frees the last one, on any thread). The last owner unmaps it.

struct Mapping {
  uint8_t* base;
  size_t length;
  Mapping(uint8_t* b, size_t l) : base(b), length(l) {}
  ~Mapping() { munmap(base, length); }
};

void ReleaseMapping(void* /*data*/, size_t /*length*/, void* deleter_data) {
  delete static_cast<std::shared_ptr<Mapping>*>(deleter_data);
}

// ---------------------------------------------------------------------------------------------------
// A region: the mapping plus its userfaultfd. Operations hold a shared_ptr for their duration, so
// close() on one thread never closes a descriptor another thread is using; the descriptors close when
// the last operation in flight ends. close() wakes a waitFault in progress through the eventfd.

struct Region {
  std::shared_ptr<Mapping> mapping;
  int uffd = -1;
  int stopfd = -1;
  std::atomic<bool> closed{false};
  ~Region() {
    if (uffd >= 0) close(uffd);
    if (stopfd >= 0) close(stopfd);
  }
};

std::mutex table_mutex;
std::map<uint32_t, std::shared_ptr<Region>> table;
uint32_t next_id = 1;

std::shared_ptr<Region> Find(uint32_t id) {
  std::lock_guard<std::mutex> lock(table_mutex);
  auto it = table.find(id);
  return it == table.end() ? nullptr : it->second;
}

// ---------------------------------------------------------------------------------------------------
// Errors: a JavaScript Error with code (the errno name), errno and syscall, built by Node.

void ThrowErrno(Isolate* isolate, int err, const char* syscall, const char* message = nullptr) {
  isolate->ThrowException(node::ErrnoException(isolate, err, syscall, message));
}

void ThrowCode(Isolate* isolate, Local<Value> (*make)(Local<String>), const char* code,
               const std::string& message) {
  Local<Context> context = isolate->GetCurrentContext();
  Local<Value> error = make(String::NewFromUtf8(isolate, message.c_str()).ToLocalChecked());
  error.As<Object>()
      ->Set(context, String::NewFromUtf8Literal(isolate, "code"),
            String::NewFromUtf8(isolate, code).ToLocalChecked())
      .Check();
  isolate->ThrowException(error);
}

void ThrowRange(Isolate* isolate, const std::string& message) {
  ThrowCode(isolate, Exception::RangeError, "ERR_OUT_OF_RANGE", message);
}

void ThrowType(Isolate* isolate, const std::string& message) {
  ThrowCode(isolate, Exception::TypeError, "ERR_INVALID_ARG_TYPE", message);
}

// A non-negative integer argument up to 2^53, or -1 with an exception thrown.
bool ArgSize(const FunctionCallbackInfo<Value>& info, int index, const char* name, size_t* out) {
  Isolate* isolate = info.GetIsolate();
  Local<Value> value = info[index];
  if (!value->IsNumber()) {
    ThrowType(isolate, std::string(name) + " must be a number");
    return false;
  }
  double d = value.As<Number>()->Value();
  if (!(d >= 0 && d <= 9007199254740991.0) || d != static_cast<double>(static_cast<uint64_t>(d))) {
    ThrowRange(isolate, std::string(name) + " must be a non-negative integer");
    return false;
  }
  *out = static_cast<size_t>(d);
  return true;
}

// The region named by the first argument, or null with an exception thrown (EBADF once closed).
std::shared_ptr<Region> ArgRegion(const FunctionCallbackInfo<Value>& info) {
  Isolate* isolate = info.GetIsolate();
  size_t id;
  if (!ArgSize(info, 0, "id", &id)) return nullptr;
  std::shared_ptr<Region> region = id <= UINT32_MAX ? Find(static_cast<uint32_t>(id)) : nullptr;
  if (!region || region->closed.load()) {
    ThrowErrno(isolate, EBADF, "uffd", "the region is closed");
    return nullptr;
  }
  return region;
}

// A page-aligned [offset, offset + length) inside the region, length > 0.
bool ArgRange(const FunctionCallbackInfo<Value>& info, const Region& region, int index, size_t length,
              size_t* offset) {
  Isolate* isolate = info.GetIsolate();
  if (!ArgSize(info, index, "offset", offset)) return false;
  if (*offset % kPage != 0 || length % kPage != 0 || length == 0) {
    ThrowRange(isolate, "offset and length must be whole pages (4096 B), length > 0");
    return false;
  }
  if (*offset > region.mapping->length || length > region.mapping->length - *offset) {
    ThrowRange(isolate, "range is outside the region");
    return false;
  }
  return true;
}

// The (id, offset, length) arguments of zeroPage, wake and discard: the region, or null with an
// exception thrown.
std::shared_ptr<Region> ArgRegionRange(const FunctionCallbackInfo<Value>& info, size_t* offset,
                                       size_t* length) {
  std::shared_ptr<Region> region = ArgRegion(info);
  if (!region || !ArgSize(info, 2, "length", length) || !ArgRange(info, *region, 1, *length, offset)) {
    return nullptr;
  }
  return region;
}

// ---------------------------------------------------------------------------------------------------
// Opening a userfaultfd: the syscall (root, or vm.unprivileged_userfaultfd=1), then /dev/userfaultfd
// (its permissions decide), then the syscall with UFFD_USER_MODE_ONLY (faults from user space only: a
// read(2) or send(2) into a missing page fails with EFAULT instead of waiting). The result says which.

struct Opened {
  int fd;
  int err;
  const char* via;
};

Opened OpenUffd(bool allow_user_mode_only) {
  const int flags = O_CLOEXEC | O_NONBLOCK;
  int fd = static_cast<int>(syscall(SYS_userfaultfd, flags));
  if (fd >= 0) return {fd, 0, "syscall"};
  int err = errno;
  int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev >= 0) {
    fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
    int dev_err = errno;
    close(dev);
    if (fd >= 0) return {fd, 0, "/dev/userfaultfd"};
    (void)dev_err;
  }
  if (allow_user_mode_only) {
    fd = static_cast<int>(syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY));
    if (fd >= 0) return {fd, 0, "user-mode-only"};
  }
  return {-1, err, nullptr};
}

bool Handshake(int fd, int* err) {
  struct uffdio_api api;
  memset(&api, 0, sizeof api);
  api.api = UFFD_API;
  api.features = 0;
  if (ioctl(fd, UFFDIO_API, &api) != 0) {
    *err = errno;
    return false;
  }
  const uint64_t needed = (1ULL << _UFFDIO_REGISTER) | (1ULL << _UFFDIO_UNREGISTER);
  if ((api.ioctls & needed) != needed) {
    *err = ENOTSUP;
    return false;
  }
  return true;
}

// probe({ userModeOnly? }) -> { ok: true, via } | { ok: false, code, errno, message }
void Probe(const FunctionCallbackInfo<Value>& info) {
  Isolate* isolate = info.GetIsolate();
  Local<Context> context = isolate->GetCurrentContext();
  bool user_mode_only = info.Length() > 0 && info[0]->BooleanValue(isolate);
  Opened opened = OpenUffd(user_mode_only);
  int err = opened.err;
  bool ok = opened.fd >= 0 && Handshake(opened.fd, &err);
  if (opened.fd >= 0) close(opened.fd);
  Local<Object> result = Object::New(isolate);
  result->Set(context, String::NewFromUtf8Literal(isolate, "ok"), v8::Boolean::New(isolate, ok)).Check();
  if (ok) {
    result
        ->Set(context, String::NewFromUtf8Literal(isolate, "via"),
              String::NewFromUtf8(isolate, opened.via).ToLocalChecked())
        .Check();
  } else {
    Local<Object> error = node::ErrnoException(isolate, err, "userfaultfd").As<Object>();
    result->Set(context, String::NewFromUtf8Literal(isolate, "error"), error).Check();
  }
  info.GetReturnValue().Set(result);
}

// ---------------------------------------------------------------------------------------------------
// map(bytes, segmentBytes, userModeOnly) -> { id, via, byteLength, segments: SharedArrayBuffer[] }

void Map(const FunctionCallbackInfo<Value>& info) {
  Isolate* isolate = info.GetIsolate();
  Local<Context> context = isolate->GetCurrentContext();
  size_t bytes, segment_bytes;
  if (!ArgSize(info, 0, "bytes", &bytes) || !ArgSize(info, 1, "segmentBytes", &segment_bytes)) return;
  bool user_mode_only = info.Length() > 2 && info[2]->BooleanValue(isolate);
  if (bytes == 0 || bytes % kPage != 0 || segment_bytes == 0 || segment_bytes % kPage != 0) {
    ThrowRange(isolate, "bytes and segmentBytes must be whole pages (4096 B), above 0");
    return;
  }
  if (bytes / segment_bytes > 1 << 16) {
    ThrowRange(isolate, "too many segments");
    return;
  }

  void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                    -1, 0);
  if (base == MAP_FAILED) return ThrowErrno(isolate, errno, "mmap");
  // A child process (fork before exec) need not copy the page tables of a large heap.
  madvise(base, bytes, MADV_DONTFORK);
  auto mapping = std::make_shared<Mapping>(static_cast<uint8_t*>(base), bytes);

  auto region = std::make_shared<Region>();
  region->mapping = mapping;
  Opened opened = OpenUffd(user_mode_only);
  if (opened.fd < 0) return ThrowErrno(isolate, opened.err, "userfaultfd");
  region->uffd = opened.fd;
  int err = 0;
  if (!Handshake(region->uffd, &err)) return ThrowErrno(isolate, err, "ioctl(UFFDIO_API)");

  struct uffdio_register reg;
  memset(&reg, 0, sizeof reg);
  reg.range.start = reinterpret_cast<uintptr_t>(base);
  reg.range.len = bytes;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  if (ioctl(region->uffd, UFFDIO_REGISTER, &reg) != 0) {
    return ThrowErrno(isolate, errno, "ioctl(UFFDIO_REGISTER)");
  }
  const uint64_t needed = (1ULL << _UFFDIO_COPY) | (1ULL << _UFFDIO_ZEROPAGE) | (1ULL << _UFFDIO_WAKE);
  if ((reg.ioctls & needed) != needed) {
    return ThrowErrno(isolate, ENOTSUP, "ioctl(UFFDIO_REGISTER)", "the kernel lacks COPY/ZEROPAGE/WAKE");
  }
  region->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (region->stopfd < 0) return ThrowErrno(isolate, errno, "eventfd");

  size_t count = (bytes + segment_bytes - 1) / segment_bytes;
  Local<Array> segments = Array::New(isolate, static_cast<int>(count));
  for (size_t i = 0; i < count; i++) {
    size_t start = i * segment_bytes;
    size_t length = bytes - start < segment_bytes ? bytes - start : segment_bytes;
    std::unique_ptr<BackingStore> store = SharedArrayBuffer::NewBackingStore(
        mapping->base + start, length, ReleaseMapping, new std::shared_ptr<Mapping>(mapping));
    Local<SharedArrayBuffer> sab = SharedArrayBuffer::New(isolate, std::move(store));
    segments->Set(context, static_cast<uint32_t>(i), sab).Check();
  }

  uint32_t id;
  {
    std::lock_guard<std::mutex> lock(table_mutex);
    id = next_id++;
    table[id] = region;
  }
  Local<Object> result = Object::New(isolate);
  result->Set(context, String::NewFromUtf8Literal(isolate, "id"), Integer::NewFromUnsigned(isolate, id)).Check();
  result
      ->Set(context, String::NewFromUtf8Literal(isolate, "via"),
            String::NewFromUtf8(isolate, opened.via).ToLocalChecked())
      .Check();
  result
      ->Set(context, String::NewFromUtf8Literal(isolate, "byteLength"),
            Number::New(isolate, static_cast<double>(bytes)))
      .Check();
  result->Set(context, String::NewFromUtf8Literal(isolate, "segments"), segments).Check();
  info.GetReturnValue().Set(result);
}

// ---------------------------------------------------------------------------------------------------
// waitFault(id, timeoutMs) -> offset of the faulting page, or null on timeout. timeoutMs < 0 waits
// without a limit. Throws EBADF if the region is closed (before or during the wait).

int64_t NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void WaitFault(const FunctionCallbackInfo<Value>& info) {
  Isolate* isolate = info.GetIsolate();
  std::shared_ptr<Region> region = ArgRegion(info);
  if (!region) return;
  if (!info[1]->IsNumber()) return ThrowType(isolate, "timeoutMs must be a number");
  double timeout = info[1].As<Number>()->Value();
  const bool forever = !(timeout >= 0);
  const int64_t deadline = forever ? 0 : NowMs() + static_cast<int64_t>(timeout > 1e12 ? 1e12 : timeout);

  for (;;) {
    int wait_ms = -1;
    if (!forever) {
      int64_t left = deadline - NowMs();
      if (left < 0) left = 0;
      wait_ms = left > INT32_MAX ? INT32_MAX : static_cast<int>(left);
    }
    struct pollfd fds[2] = {{region->uffd, POLLIN, 0}, {region->stopfd, POLLIN, 0}};
    int n = poll(fds, 2, wait_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ThrowErrno(isolate, errno, "poll");
    }
    if (region->closed.load() || (fds[1].revents & POLLIN)) {
      return ThrowErrno(isolate, EBADF, "uffd", "the region was closed while waiting for a fault");
    }
    if (n == 0) {
      if (!forever && NowMs() >= deadline) return info.GetReturnValue().Set(Null(isolate));
      continue;
    }
    if (fds[0].revents & (POLLERR | POLLNVAL)) return ThrowErrno(isolate, EIO, "poll(uffd)");
    struct uffd_msg msg;
    ssize_t got = read(region->uffd, &msg, sizeof msg);
    if (got < 0) {
      // Another thread read this fault first, or a signal: wait again.
      if (errno == EAGAIN || errno == EINTR) continue;
      return ThrowErrno(isolate, errno, "read(uffd)");
    }
    if (got != sizeof msg) return ThrowErrno(isolate, EIO, "read(uffd)", "short uffd_msg");
    if (msg.event != UFFD_EVENT_PAGEFAULT) continue;  // no other events are enabled
    uint64_t address = msg.arg.pagefault.address & ~static_cast<uint64_t>(kPage - 1);
    uint64_t base = reinterpret_cast<uintptr_t>(region->mapping->base);
    if (address < base || address - base >= region->mapping->length) continue;
    return info.GetReturnValue().Set(Number::New(isolate, static_cast<double>(address - base)));
  }
}

// ---------------------------------------------------------------------------------------------------
// Installing pages. UFFDIO_COPY and UFFDIO_ZEROPAGE stop at the first page already present (EEXIST);
// they report partial progress in the `copy`/`zeropage` field with EAGAIN. Both are driven to the end
// of the range: pages already present are skipped and counted, so a page installed by the bulk channel
// and by a fault at the same moment is never an error.
// Result: { installed, alreadyPresent } in bytes.

template <typename Step>
void Fill(const FunctionCallbackInfo<Value>& info, size_t length, const char* syscall, Step step) {
  Isolate* isolate = info.GetIsolate();
  Local<Context> context = isolate->GetCurrentContext();
  size_t done = 0, present = 0, installed = 0;
  while (done < length) {
    int64_t progress = 0;
    int err = step(done, length - done, &progress);
    if (err == 0) {
      installed += length - done;
      done = length;
    } else if (err == EAGAIN) {
      if (progress > 0) {
        installed += static_cast<size_t>(progress);
        done += static_cast<size_t>(progress);
      }
    } else if (err == EEXIST) {
      present += kPage;
      done += kPage;
    } else {
      return ThrowErrno(isolate, err, syscall);
    }
  }
  Local<Object> result = Object::New(isolate);
  result
      ->Set(context, String::NewFromUtf8Literal(isolate, "installed"),
            Number::New(isolate, static_cast<double>(installed)))
      .Check();
  result
      ->Set(context, String::NewFromUtf8Literal(isolate, "alreadyPresent"),
            Number::New(isolate, static_cast<double>(present)))
      .Check();
  info.GetReturnValue().Set(result);
}

// copy(id, offset, source: ArrayBufferView, dontWake?)
void Copy(const FunctionCallbackInfo<Value>& info) {
  Isolate* isolate = info.GetIsolate();
  std::shared_ptr<Region> region = ArgRegion(info);
  if (!region) return;
  if (!info[2]->IsArrayBufferView()) return ThrowType(isolate, "source must be a TypedArray or DataView");
  Local<ArrayBufferView> view = info[2].As<ArrayBufferView>();
  size_t length = view->ByteLength();
  size_t offset;
  if (!ArgRange(info, *region, 1, length, &offset)) return;
  std::shared_ptr<BackingStore> store = view->Buffer()->GetBackingStore();
  const uint8_t* source = static_cast<const uint8_t*>(store->Data()) + view->ByteOffset();
  // Reading a missing page of the region inside UFFDIO_COPY would wait for this very handler.
  const uint8_t* base = region->mapping->base;
  if (source < base + region->mapping->length && base < source + length) {
    return ThrowRange(isolate, "source must not lie inside the region");
  }
  const uint64_t mode = info.Length() > 3 && info[3]->BooleanValue(isolate) ? UFFDIO_COPY_MODE_DONTWAKE : 0;
  uint8_t* dst = region->mapping->base + offset;
  int fd = region->uffd;
  Fill(info, length, "ioctl(UFFDIO_COPY)", [&](size_t at, size_t len, int64_t* progress) {
    struct uffdio_copy c;
    memset(&c, 0, sizeof c);
    c.dst = reinterpret_cast<uintptr_t>(dst + at);
    c.src = reinterpret_cast<uintptr_t>(source + at);
    c.len = len;
    c.mode = mode;
    if (ioctl(fd, UFFDIO_COPY, &c) == 0) return 0;
    int err = errno;
    *progress = c.copy;
    return err;
  });
}

// zeroPage(id, offset, length, dontWake?)
void ZeroPage(const FunctionCallbackInfo<Value>& info) {
  Isolate* isolate = info.GetIsolate();
  size_t offset, length;
  std::shared_ptr<Region> region = ArgRegionRange(info, &offset, &length);
  if (!region) return;
  const uint64_t mode =
      info.Length() > 3 && info[3]->BooleanValue(isolate) ? UFFDIO_ZEROPAGE_MODE_DONTWAKE : 0;
  uint8_t* dst = region->mapping->base + offset;
  int fd = region->uffd;
  Fill(info, length, "ioctl(UFFDIO_ZEROPAGE)", [&](size_t at, size_t len, int64_t* progress) {
    struct uffdio_zeropage z;
    memset(&z, 0, sizeof z);
    z.range.start = reinterpret_cast<uintptr_t>(dst + at);
    z.range.len = len;
    z.mode = mode;
    if (ioctl(fd, UFFDIO_ZEROPAGE, &z) == 0) return 0;
    int err = errno;
    *progress = z.zeropage;
    return err;
  });
}

// wake(id, offset, length)
void Wake(const FunctionCallbackInfo<Value>& info) {
  Isolate* isolate = info.GetIsolate();
  size_t offset, length;
  std::shared_ptr<Region> region = ArgRegionRange(info, &offset, &length);
  if (!region) return;
  struct uffdio_range range;
  range.start = reinterpret_cast<uintptr_t>(region->mapping->base + offset);
  range.len = length;
  if (ioctl(region->uffd, UFFDIO_WAKE, &range) != 0) return ThrowErrno(isolate, errno, "ioctl(UFFDIO_WAKE)");
}

// close(id) -> true if this call closed it, false if it was already closed. The region is unregistered
// at once (the kernel wakes every thread blocked on a missing page of it, and such pages read as zeros
// from then on); the descriptor closes when no other thread is inside a call on it and no watch holds
// it. The memory stays mapped while any SharedArrayBuffer over it is alive.
void Close(const FunctionCallbackInfo<Value>& info) {
  size_t id;
  if (!ArgSize(info, 0, "id", &id)) return;
  std::shared_ptr<Region> region;
  {
    std::lock_guard<std::mutex> lock(table_mutex);
    auto it = id <= UINT32_MAX ? table.find(static_cast<uint32_t>(id)) : table.end();
    if (it != table.end()) {
      region = it->second;
      table.erase(it);
    }
  }
  if (!region) return info.GetReturnValue().Set(false);
  region->closed.store(true);
  // Unregistering wakes every thread blocked on a missing page now, even while a watch or an
  // operation in flight keeps the descriptor open; such pages fill with zeros on their next touch.
  struct uffdio_range range;
  range.start = reinterpret_cast<uintptr_t>(region->mapping->base);
  range.len = region->mapping->length;
  ioctl(region->uffd, UFFDIO_UNREGISTER, &range);
  uint64_t one = 1;
  if (write(region->stopfd, &one, sizeof one) < 0) {
    // The counter cannot overflow from one write; nothing else can fail here.
  }
  info.GetReturnValue().Set(true);
}

// ---------------------------------------------------------------------------------------------------
// watch(id, callback): the faults of the region are read on this thread's event loop (a uv_poll on the
// userfaultfd) and handed to callback(offsets: number[]) in batches, in arrival order, one entry per
// fault message (a page that several threads wait on may appear more than once). This is how the
// enclave's I/O thread serves faults next to its network channels, with no extra thread in between.
// unwatch(id) stops it; the environment's teardown stops it too. One watch per region.

struct Watch {
  uv_poll_t handle;
  uint32_t id;
  std::shared_ptr<Region> region;
  Isolate* isolate;
  v8::Global<Context> context;
  v8::Global<v8::Function> callback;
  bool stopped = false;
};

// Watches by region id; a watch outlives close() (it holds the region) until unwatch or teardown.
std::mutex watches_mutex;
std::map<uint32_t, Watch*> watches;

void FreeWatch(uv_handle_t* handle) { delete reinterpret_cast<Watch*>(handle->data); }

void StopWatch(Watch* watch);

void CleanupWatch(void* arg) { StopWatch(static_cast<Watch*>(arg)); }

void StopWatch(Watch* watch) {
  if (watch->stopped) return;
  watch->stopped = true;
  node::RemoveEnvironmentCleanupHook(watch->isolate, CleanupWatch, watch);
  {
    std::lock_guard<std::mutex> lock(watches_mutex);
    watches.erase(watch->id);
  }
  watch->callback.Reset();
  watch->context.Reset();
  uv_poll_stop(&watch->handle);
  uv_close(reinterpret_cast<uv_handle_t*>(&watch->handle), FreeWatch);
}

// Reads every fault message queued now (the descriptor is non-blocking); false on a read error.
bool DrainFaults(const Region& region, std::vector<double>* offsets, int* err) {
  const uint64_t base = reinterpret_cast<uintptr_t>(region.mapping->base);
  for (;;) {
    struct uffd_msg msgs[16];
    ssize_t got = read(region.uffd, msgs, sizeof msgs);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return true;
      *err = errno;
      return false;
    }
    size_t count = static_cast<size_t>(got) / sizeof(struct uffd_msg);
    for (size_t i = 0; i < count; i++) {
      if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;  // no other events are enabled
      uint64_t address = msgs[i].arg.pagefault.address & ~static_cast<uint64_t>(kPage - 1);
      if (address < base || address - base >= region.mapping->length) continue;
      offsets->push_back(static_cast<double>(address - base));
    }
    if (count < sizeof msgs / sizeof msgs[0]) return true;
  }
}

void OnReadable(uv_poll_t* handle, int status, int events) {
  Watch* watch = reinterpret_cast<Watch*>(handle->data);
  if (watch->stopped || watch->region->closed.load()) return;
  Isolate* isolate = watch->isolate;
  v8::HandleScope scope(isolate);
  Local<Context> context = watch->context.Get(isolate);
  Context::Scope context_scope(context);
  std::vector<double> offsets;
  int err = status < 0 ? EIO : 0;
  if (err == 0) DrainFaults(*watch->region, &offsets, &err);
  Local<Value> argv[2];
  argv[0] = err == 0 ? Local<Value>(Null(isolate)) : node::ErrnoException(isolate, err, "read(uffd)");
  Local<Array> list = Array::New(isolate, static_cast<int>(offsets.size()));
  for (size_t i = 0; i < offsets.size(); i++) {
    list->Set(context, static_cast<uint32_t>(i), Number::New(isolate, offsets[i])).Check();
  }
  argv[1] = list;
  if (err == 0 && offsets.empty()) return;
  Local<v8::Function> callback = watch->callback.Get(isolate);
  // MakeCallback runs the microtasks and ticks queued by the callback, as for any I/O callback.
  node::MakeCallback(isolate, context->Global(), callback, 2, argv, node::async_context{0, 0});
}

void WatchFaults(const FunctionCallbackInfo<Value>& info) {
  Isolate* isolate = info.GetIsolate();
  std::shared_ptr<Region> region = ArgRegion(info);
  if (!region) return;
  if (!info[1]->IsFunction()) return ThrowType(isolate, "callback must be a function");
  const uint32_t id = static_cast<uint32_t>(info[0].As<Number>()->Value());
  {
    std::lock_guard<std::mutex> lock(watches_mutex);
    if (watches.count(id) != 0) return ThrowErrno(isolate, EBUSY, "uffd", "the region is already watched");
  }
  uv_loop_t* loop = node::GetCurrentEventLoop(isolate);
  if (loop == nullptr) return ThrowErrno(isolate, EINVAL, "uv_poll_init", "no event loop on this thread");
  Watch* watch = new Watch();
  watch->id = id;
  watch->region = region;
  watch->isolate = isolate;
  watch->context.Reset(isolate, isolate->GetCurrentContext());
  watch->callback.Reset(isolate, info[1].As<v8::Function>());
  watch->handle.data = watch;
  int rc = uv_poll_init(loop, &watch->handle, region->uffd);
  if (rc != 0) {
    delete watch;
    return ThrowErrno(isolate, -rc, "uv_poll_init");
  }
  rc = uv_poll_start(&watch->handle, UV_READABLE, OnReadable);
  if (rc != 0) {
    watch->stopped = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&watch->handle), FreeWatch);
    return ThrowErrno(isolate, -rc, "uv_poll_start");
  }
  {
    std::lock_guard<std::mutex> lock(watches_mutex);
    watches[id] = watch;
  }
  node::AddEnvironmentCleanupHook(isolate, CleanupWatch, watch);
}

// unwatch(id) -> true if a watch was stopped. Works on a closed region too (its watch still holds it).
void Unwatch(const FunctionCallbackInfo<Value>& info) {
  size_t id;
  if (!ArgSize(info, 0, "id", &id)) return;
  Watch* watch = nullptr;
  {
    std::lock_guard<std::mutex> lock(watches_mutex);
    auto it = id <= UINT32_MAX ? watches.find(static_cast<uint32_t>(id)) : watches.end();
    if (it != watches.end()) watch = it->second;
  }
  // Only the watching thread may touch its uv handle.
  if (watch == nullptr || watch->isolate != info.GetIsolate()) return info.GetReturnValue().Set(false);
  StopWatch(watch);
  info.GetReturnValue().Set(true);
}

// ---------------------------------------------------------------------------------------------------
// discard(id, offset, length): the pages' contents are dropped (MADV_DONTNEED), so they read as missing
// again and the next touch faults: how a page received in an earlier pre-copy round, and then written on
// the source, stops being readable here until its new version arrives.

void Discard(const FunctionCallbackInfo<Value>& info) {
  Isolate* isolate = info.GetIsolate();
  size_t offset, length;
  std::shared_ptr<Region> region = ArgRegionRange(info, &offset, &length);
  if (!region) return;
  if (madvise(region->mapping->base + offset, length, MADV_DONTNEED) != 0) {
    return ThrowErrno(isolate, errno, "madvise(MADV_DONTNEED)");
  }
}

// regions() -> how many regions are open in this process (for leak checks in tests).
void Regions(const FunctionCallbackInfo<Value>& info) {
  std::lock_guard<std::mutex> lock(table_mutex);
  info.GetReturnValue().Set(Integer::NewFromUnsigned(info.GetIsolate(), static_cast<uint32_t>(table.size())));
}

}  // namespace

NODE_MODULE_INIT(/* exports, module, context */) {
  using constmig::ExportFunction;
  ExportFunction(exports, context, "probe", Probe);
  ExportFunction(exports, context, "map", Map);
  ExportFunction(exports, context, "waitFault", WaitFault);
  ExportFunction(exports, context, "copy", Copy);
  ExportFunction(exports, context, "zeroPage", ZeroPage);
  ExportFunction(exports, context, "wake", Wake);
  ExportFunction(exports, context, "watch", WatchFaults);
  ExportFunction(exports, context, "unwatch", Unwatch);
  ExportFunction(exports, context, "discard", Discard);
  ExportFunction(exports, context, "close", Close);
  ExportFunction(exports, context, "regions", Regions);
  exports
      ->Set(context, String::NewFromUtf8Literal(context->GetIsolate(), "pageSize"),
            Integer::NewFromUnsigned(context->GetIsolate(), static_cast<uint32_t>(kPage)))
      .Check();
}
