// constmig page-bitmap addon (issue 6): the whole-bitmap passes of a migration's blackout (count, and,
// and-not, or, invert, subset, publish, runs), one call per pass over the words.
//
// Why: a blackout makes a dozen passes over bitmaps of one bit per heap page, 64 Ki words at 8 GiB.
// Compiled by V8 a pass costs 0.1-0.4 ms; interpreted it costs 4-8 ms, and the blackout is where V8 is
// least likely to have the code compiled: each pass runs a few times per migration, warm-up runs miss
// paths (a partial word, a word >= 2^31 that is not a Smi) and the optimised code is dropped on the
// first such miss (deopt), so profiled 8 GiB blackouts spent 15-25 ms in these loops. Here they cost
// the same every time. src/heap/bitmap-kernels.ts keeps the JavaScript form as the fallback; one
// compliance suite runs both.
//
// Every function takes Uint32Array views (over an ArrayBuffer or a SharedArrayBuffer) of equal length,
// checked here. publishBits is the only one that other threads may watch: it uses atomic read-modify-
// write, as JavaScript's Atomics.or does, so a thread that sees a bit also sees what was stored before.

#include <stddef.h>
#include <stdint.h>

#include <node.h>
#include <v8.h>

#include "export-function.h"

namespace {

using v8::FunctionCallbackInfo;
using v8::Isolate;
using v8::Local;
using v8::Value;

struct Words {
  uint32_t* data;
  size_t length;
};

void ThrowType(Isolate* isolate, const char* message) {
  isolate->ThrowException(
      v8::Exception::TypeError(v8::String::NewFromUtf8(isolate, message, v8::NewStringType::kNormal).ToLocalChecked()));
}

bool WordsOf(Local<Value> value, Words* out) {
  if (!value->IsUint32Array()) return false;
  Local<v8::Uint32Array> view = value.As<v8::Uint32Array>();
  out->length = view->Length();
  out->data = reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(view->Buffer()->Data()) + view->ByteOffset());
  return true;
}

// Without -mpopcnt, __builtin_popcount is a call into libgcc per word (profiled: most of a count).
// This is the branch-free form, which compilers turn into a few instructions or vector code.
inline uint32_t Popcount(uint32_t v) {
  v = v - ((v >> 1) & 0x55555555u);
  v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
  return (((v + (v >> 4)) & 0x0f0f0f0fu) * 0x01010101u) >> 24;
}

bool One(const FunctionCallbackInfo<Value>& info, Words* a) {
  if (WordsOf(info[0], a)) return true;
  ThrowType(info.GetIsolate(), "expected a Uint32Array");
  return false;
}

bool Two(const FunctionCallbackInfo<Value>& info, Words* a, Words* b) {
  if (WordsOf(info[0], a) && WordsOf(info[1], b) && a->length == b->length) return true;
  ThrowType(info.GetIsolate(), "expected two Uint32Arrays of the same length");
  return false;
}

// count(a): the number of set bits.
void Count(const FunctionCallbackInfo<Value>& info) {
  Words a;
  if (!One(info, &a)) return;
  uint64_t total = 0;
  for (size_t i = 0; i < a.length; i++) total += Popcount(a.data[i]);
  info.GetReturnValue().Set(double(total));
}

// countAnd(a, b): the number of bits set in both.
void CountAnd(const FunctionCallbackInfo<Value>& info) {
  Words a, b;
  if (!Two(info, &a, &b)) return;
  uint64_t total = 0;
  for (size_t i = 0; i < a.length; i++) total += Popcount(a.data[i] & b.data[i]);
  info.GetReturnValue().Set(double(total));
}

// and(a, b): a &= b. andNot(a, b): a &= ~b. or(a, b): a |= b. xor(a, b): a ^= b.
void And(const FunctionCallbackInfo<Value>& info) {
  Words a, b;
  if (!Two(info, &a, &b)) return;
  for (size_t i = 0; i < a.length; i++) a.data[i] &= b.data[i];
}
void AndNot(const FunctionCallbackInfo<Value>& info) {
  Words a, b;
  if (!Two(info, &a, &b)) return;
  for (size_t i = 0; i < a.length; i++) a.data[i] &= ~b.data[i];
}
void Or(const FunctionCallbackInfo<Value>& info) {
  Words a, b;
  if (!Two(info, &a, &b)) return;
  for (size_t i = 0; i < a.length; i++) a.data[i] |= b.data[i];
}
void Xor(const FunctionCallbackInfo<Value>& info) {
  Words a, b;
  if (!Two(info, &a, &b)) return;
  for (size_t i = 0; i < a.length; i++) a.data[i] ^= b.data[i];
}

// invert(a): a = ~a, every word (the caller clears the bits past its last page).
void Invert(const FunctionCallbackInfo<Value>& info) {
  Words a;
  if (!One(info, &a)) return;
  for (size_t i = 0; i < a.length; i++) a.data[i] = ~a.data[i];
}

// isSubsetOf(a, b): true if every bit set in a is set in b.
void IsSubsetOf(const FunctionCallbackInfo<Value>& info) {
  Words a, b;
  if (!Two(info, &a, &b)) return;
  uint32_t extra = 0;
  for (size_t i = 0; i < a.length; i++) extra |= a.data[i] & ~b.data[i];
  info.GetReturnValue().Set(extra == 0);
}

// publishBits(shared, bits): shared |= bits, word by word with an atomic or where bits has any, so
// threads reading `shared` with Atomics see each word change whole. Wakes nobody.
void PublishBits(const FunctionCallbackInfo<Value>& info) {
  Words shared, bits;
  if (!Two(info, &shared, &bits)) return;
  for (size_t i = 0; i < shared.length; i++) {
    uint32_t mask = bits.data[i];
    if (mask != 0) __atomic_fetch_or(&shared.data[i], mask, __ATOMIC_SEQ_CST);
  }
}

// findRuns(a, from, pageCount, out): the maximal runs of set bits among bits [from, pageCount) of a,
// in order, as (first, end) pairs in out, as many as fit; returns how many it wrote. A run is always
// whole (its end is the next clear bit, or pageCount), so the caller resumes at the last end.
void FindRuns(const FunctionCallbackInfo<Value>& info) {
  Isolate* isolate = info.GetIsolate();
  Words a, out;
  if (!WordsOf(info[0], &a) || !WordsOf(info[3], &out)) return ThrowType(isolate, "expected Uint32Arrays");
  if (!info[1]->IsUint32() || !info[2]->IsUint32()) return ThrowType(isolate, "from and pageCount must be uint32");
  uint64_t from = info[1].As<v8::Uint32>()->Value();
  uint64_t pageCount = info[2].As<v8::Uint32>()->Value();
  if (pageCount > uint64_t(a.length) * 32) return ThrowType(isolate, "pageCount is past the end of the array");
  size_t written = 0;
  uint64_t page = from;
  while (written + 2 <= out.length && page < pageCount) {
    // The next set bit at or after page.
    size_t w = page >> 5;
    uint32_t bits = a.data[w] & (~0u << (page & 31));
    while (bits == 0 && ++w < a.length) bits = a.data[w];
    if (bits == 0) break;
    uint64_t first = uint64_t(w) * 32 + __builtin_ctz(bits);
    if (first >= pageCount) break;
    // The next clear bit after first.
    bits = ~a.data[w] & (~0u << (first & 31));
    while (bits == 0 && ++w < a.length) bits = ~a.data[w];
    uint64_t end = bits == 0 ? pageCount : uint64_t(w) * 32 + __builtin_ctz(bits);
    if (end > pageCount) end = pageCount;
    out.data[written++] = uint32_t(first);
    out.data[written++] = uint32_t(end);
    page = end;
  }
  info.GetReturnValue().Set(uint32_t(written / 2));
}

}  // namespace

NODE_MODULE_INIT(/* exports, module, context */) {
  using constmig::ExportFunction;
  ExportFunction(exports, context, "count", Count);
  ExportFunction(exports, context, "countAnd", CountAnd);
  ExportFunction(exports, context, "and", And);
  ExportFunction(exports, context, "andNot", AndNot);
  ExportFunction(exports, context, "or", Or);
  ExportFunction(exports, context, "xor", Xor);
  ExportFunction(exports, context, "invert", Invert);
  ExportFunction(exports, context, "isSubsetOf", IsSubsetOf);
  ExportFunction(exports, context, "publishBits", PublishBits);
  ExportFunction(exports, context, "findRuns", FindRuns);
}
