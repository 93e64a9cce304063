// Shared by the constmig addons: one exported function of a context-aware (NODE_MODULE_INIT) addon.
#pragma once

#include <node.h>
#include <v8.h>

namespace constmig {

inline void ExportFunction(v8::Local<v8::Object> exports, v8::Local<v8::Context> context, const char* name,
                           v8::FunctionCallback fn) {
  v8::Isolate* isolate = context->GetIsolate();
  exports
      ->Set(context, v8::String::NewFromUtf8(isolate, name, v8::NewStringType::kInternalized).ToLocalChecked(),
            v8::FunctionTemplate::New(isolate, fn)->GetFunction(context).ToLocalChecked())
      .Check();
}

}  // namespace constmig
