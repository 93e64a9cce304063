// constmig data-path addon (issue 6): the per-byte work of moving heap pages, done by the OpenSSL that
// Node itself is built with, without the copies and allocations node:crypto's API implies.
//
// Why: node:crypto's Cipher.update() returns a new Buffer for every call, so sealing 1 MiB of heap
// allocates 1 MiB (fresh memory, faulted in and later collected) and opening one writes the plaintext
// into a new Buffer that is then copied into the heap; a page-set digest leaf is one hash() call per
// 4 KiB page. Profiled (docs/benchmarks.md, "Throughput work"), these costs were larger than the
// cipher and the hash themselves. The primitives are unchanged: AES-256-GCM and SHA-256 from OpenSSL's
// EVP interface (the library node:crypto calls), with the same keys, nonces and associated data, so a
// frame sealed here opens with node:crypto and the other way round (test/native/datapath.test.ts).
// Nothing here invents a primitive or compares a tag: EVP_DecryptFinal_ex checks the GCM tag (in
// constant time, CRYPTO_memcmp).
//
// Every function is synchronous and works on caller-owned views (TypedArray or DataView, over an
// ArrayBuffer or a SharedArrayBuffer), whose lengths are checked here. NODE_MODULE_INIT makes the addon
// context-aware, so it loads in worker threads too.

#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <node.h>
#include <v8.h>

#include "export-function.h"

namespace {

using v8::Array;
using v8::ArrayBufferView;
using v8::Context;
using v8::FunctionCallbackInfo;
using v8::Isolate;
using v8::Local;
using v8::NewStringType;
using v8::String;
using v8::Value;

constexpr size_t kPageBytes = 4096;
constexpr size_t kLeafBytes = 32;
constexpr size_t kKeyBytes = 32;
constexpr size_t kIvBytes = 12;
constexpr size_t kTagBytes = 16;
// EVP_*Update takes an int length: feed long inputs in pieces below INT_MAX.
constexpr size_t kMaxUpdate = size_t(1) << 30;

struct Bytes {
  uint8_t* data;
  size_t length;
};

Local<String> Text(Isolate* isolate, const char* message) {
  return String::NewFromUtf8(isolate, message, NewStringType::kNormal).ToLocalChecked();
}
void ThrowType(Isolate* isolate, const char* message) {
  isolate->ThrowException(v8::Exception::TypeError(Text(isolate, message)));
}
void ThrowRange(Isolate* isolate, const char* message) {
  isolate->ThrowException(v8::Exception::RangeError(Text(isolate, message)));
}
void ThrowError(Isolate* isolate, const char* message) {
  isolate->ThrowException(v8::Exception::Error(Text(isolate, message)));
}

bool ViewBytes(Local<Value> value, Bytes* out) {
  if (!value->IsArrayBufferView()) return false;
  Local<ArrayBufferView> view = value.As<ArrayBufferView>();
  out->length = view->ByteLength();
  // Data() of the view's buffer: an ArrayBuffer or a SharedArrayBuffer alike.
  out->data = static_cast<uint8_t*>(view->Buffer()->Data()) + view->ByteOffset();
  return true;
}

// An array of views, e.g. the slices of a frame body.
bool ViewList(Isolate* isolate, Local<Value> value, Bytes* out, size_t capacity, size_t* count, size_t* total) {
  if (!value->IsArray()) return false;
  Local<Array> array = value.As<Array>();
  Local<Context> context = isolate->GetCurrentContext();
  if (array->Length() > capacity) return false;
  *count = array->Length();
  *total = 0;
  for (uint32_t i = 0; i < array->Length(); i++) {
    Local<Value> item;
    if (!array->Get(context, i).ToLocal(&item) || !ViewBytes(item, &out[i])) return false;
    *total += out[i].length;
  }
  return true;
}

// Fetched once: an implicit fetch on every init (EVP_aes_256_gcm(), EVP_sha256()) costs a lookup per call.
EVP_CIPHER* Gcm() {
  static EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  return cipher;
}
EVP_MD* Sha256() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

bool Update(EVP_CIPHER_CTX* ctx, bool encrypt, uint8_t* out, const uint8_t* in, size_t length) {
  while (length > 0) {
    int piece = int(length < kMaxUpdate ? length : kMaxUpdate);
    int written = 0;
    int ok = encrypt ? EVP_EncryptUpdate(ctx, out, &written, in, piece)
                     : EVP_DecryptUpdate(ctx, out, &written, in, piece);
    if (ok != 1 || written != piece) return false;
    if (out != nullptr) out += piece;
    in += piece;
    length -= piece;
  }
  return true;
}

// Key, IV and associated data into a fresh context; the caller frees it.
EVP_CIPHER_CTX* StartGcm(bool encrypt, const Bytes& key, const Bytes& iv, const Bytes* aad, size_t aadCount) {
  EVP_CIPHER* cipher = Gcm();
  if (cipher == nullptr) return nullptr;
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (ctx == nullptr) return nullptr;
  bool ok = EVP_CipherInit_ex2(ctx, cipher, key.data, iv.data, encrypt ? 1 : 0, nullptr) == 1;
  for (size_t i = 0; ok && i < aadCount; i++) {
    if (aad[i].length > 0) ok = Update(ctx, encrypt, nullptr, aad[i].data, aad[i].length);
  }
  if (!ok) {
    EVP_CIPHER_CTX_free(ctx);
    return nullptr;
  }
  return ctx;
}

constexpr size_t kMaxAad = 4;
constexpr size_t kMaxParts = 4096;

bool KeyAndIv(Isolate* isolate, const FunctionCallbackInfo<Value>& info, Bytes* key, Bytes* iv) {
  if (!ViewBytes(info[0], key) || key->length != kKeyBytes) {
    ThrowType(isolate, "key must be a 32-byte view");
    return false;
  }
  if (!ViewBytes(info[1], iv) || iv->length != kIvBytes) {
    ThrowType(isolate, "iv must be a 12-byte view");
    return false;
  }
  return true;
}

// gcmSeal(key, iv, aad: view[], parts: view[], out: view): out = ciphertext of the parts || tag.
void GcmSeal(const FunctionCallbackInfo<Value>& info) {
  Isolate* isolate = info.GetIsolate();
  Bytes key, iv, out;
  Bytes aad[kMaxAad];
  static thread_local Bytes parts[kMaxParts];
  size_t aadCount, aadTotal, partCount, partTotal;
  if (!KeyAndIv(isolate, info, &key, &iv)) return;
  if (!ViewList(isolate, info[2], aad, kMaxAad, &aadCount, &aadTotal)) return ThrowType(isolate, "aad must be an array of at most 4 views");
  if (!ViewList(isolate, info[3], parts, kMaxParts, &partCount, &partTotal)) return ThrowType(isolate, "parts must be an array of at most 4096 views");
  if (!ViewBytes(info[4], &out)) return ThrowType(isolate, "out must be a view");
  if (out.length != partTotal + kTagBytes) return ThrowRange(isolate, "out must hold exactly the plaintext and the 16-byte tag");
  EVP_CIPHER_CTX* ctx = StartGcm(true, key, iv, aad, aadCount);
  if (ctx == nullptr) return ThrowError(isolate, "AES-256-GCM: cannot start a context");
  bool ok = true;
  uint8_t* at = out.data;
  for (size_t i = 0; ok && i < partCount; i++) {
    ok = Update(ctx, true, at, parts[i].data, parts[i].length);
    at += parts[i].length;
  }
  int written = 0;
  ok = ok && EVP_EncryptFinal_ex(ctx, at, &written) == 1 && written == 0 &&
       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, int(kTagBytes), at) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) return ThrowError(isolate, "AES-256-GCM: sealing failed");
}

// gcmOpen(key, iv, aad: view[], ciphertext: view[], tag: view, target: view): boolean. Decrypts into
// target (exactly the ciphertext's length) and checks the tag; on a mismatch target is wiped and the
// answer is false, so no unverified plaintext stays in the caller's memory.
void GcmOpen(const FunctionCallbackInfo<Value>& info) {
  Isolate* isolate = info.GetIsolate();
  Bytes key, iv, tag, target;
  Bytes aad[kMaxAad];
  static thread_local Bytes parts[kMaxParts];
  size_t aadCount, aadTotal, partCount, partTotal;
  if (!KeyAndIv(isolate, info, &key, &iv)) return;
  if (!ViewList(isolate, info[2], aad, kMaxAad, &aadCount, &aadTotal)) return ThrowType(isolate, "aad must be an array of at most 4 views");
  if (!ViewList(isolate, info[3], parts, kMaxParts, &partCount, &partTotal)) return ThrowType(isolate, "ciphertext must be an array of at most 4096 views");
  if (!ViewBytes(info[4], &tag) || tag.length != kTagBytes) return ThrowType(isolate, "tag must be a 16-byte view");
  if (!ViewBytes(info[5], &target)) return ThrowType(isolate, "target must be a view");
  if (target.length != partTotal) return ThrowRange(isolate, "target must be exactly as long as the ciphertext");
  EVP_CIPHER_CTX* ctx = StartGcm(false, key, iv, aad, aadCount);
  if (ctx == nullptr) return ThrowError(isolate, "AES-256-GCM: cannot start a context");
  bool ok = true;
  uint8_t* at = target.data;
  for (size_t i = 0; ok && i < partCount; i++) {
    ok = Update(ctx, false, at, parts[i].data, parts[i].length);
    at += parts[i].length;
  }
  // The tag is copied: it may sit in the same memory the plaintext is being written to.
  uint8_t expected[kTagBytes];
  memcpy(expected, tag.data, kTagBytes);
  int written = 0;
  ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, int(kTagBytes), expected) == 1 &&
       EVP_DecryptFinal_ex(ctx, at, &written) == 1 && written == 0;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) OPENSSL_cleanse(target.data, target.length);
  info.GetReturnValue().Set(ok);
}

// sha256PageLeaves(pages: view, firstPage: number, leaves: view): leaves[i] = SHA-256(u64le(firstPage + i)
// || page i), for every 4096-byte page of `pages`; `leaves` holds 32 bytes per page.
void Sha256PageLeaves(const FunctionCallbackInfo<Value>& info) {
  Isolate* isolate = info.GetIsolate();
  Bytes pages, leaves;
  if (!ViewBytes(info[0], &pages) || pages.length % kPageBytes != 0) return ThrowType(isolate, "pages must be a view of whole 4096-byte pages");
  if (!info[1]->IsNumber()) return ThrowType(isolate, "firstPage must be a number");
  double first = info[1].As<v8::Number>()->Value();
  size_t count = pages.length / kPageBytes;
  if (!(first >= 0) || first + double(count) > 9007199254740991.0 || first != double(uint64_t(first))) return ThrowRange(isolate, "firstPage must be a non-negative integer");
  if (!ViewBytes(info[2], &leaves) || leaves.length != count * kLeafBytes) return ThrowRange(isolate, "leaves must hold 32 bytes per page");
  EVP_MD* md = Sha256();
  EVP_MD_CTX* ctx = md == nullptr ? nullptr : EVP_MD_CTX_new();
  if (ctx == nullptr) return ThrowError(isolate, "SHA-256: cannot start a context");
  bool ok = true;
  for (size_t i = 0; ok && i < count; i++) {
    uint64_t page = uint64_t(first) + i;
    uint8_t prefix[8];
    for (int b = 0; b < 8; b++) prefix[b] = uint8_t(page >> (8 * b));
    unsigned int written = 0;
    ok = EVP_DigestInit_ex2(ctx, md, nullptr) == 1 && EVP_DigestUpdate(ctx, prefix, sizeof prefix) == 1 &&
         EVP_DigestUpdate(ctx, pages.data + i * kPageBytes, kPageBytes) == 1 &&
         EVP_DigestFinal_ex(ctx, leaves.data + i * kLeafBytes, &written) == 1 && written == kLeafBytes;
  }
  EVP_MD_CTX_free(ctx);
  if (!ok) ThrowError(isolate, "SHA-256 failed");
}

}  // namespace

NODE_MODULE_INIT(/* exports, module, context */) {
  using constmig::ExportFunction;
  ExportFunction(exports, context, "gcmSeal", GcmSeal);
  ExportFunction(exports, context, "gcmOpen", GcmOpen);
  ExportFunction(exports, context, "sha256PageLeaves", Sha256PageLeaves);
}
