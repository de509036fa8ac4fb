// One codec for every JSON record the pool keeps (volumes, snapshots, lineages in the engine;
// images, instances, security groups and key pairs in the EC2 layer). Each record type is
// described once, as a list of fields, and that list drives both its encoding and its decoding:
// the two cannot drift apart, and every record is read by the same rules.
//
//   - A record is a JSON object. Fields it does not name are ignored (a newer writer's fields).
//   - A required field must be present and of its C++ type; an optional one may be absent (the
//     member keeps its default) and is written only when it differs from that default.
//   - A record stored under a key must name that key; the type's own consistency rule runs last.
//   - Any failure is Corruption naming the record ("volume record vol-1: ..."), never an
//     exception, never a half-filled value.
//
// Usage (see store/records.cc):
//   const RecordCodec<Foo> kFooCodec("foo", {Required("id", &Foo::id), Optional("n", &Foo::n)},
//                                    [](const Foo& f) { return f.id; });
#ifndef STRATA_UTIL_RECORD_CODEC_H_
#define STRATA_UTIL_RECORD_CODEC_H_

#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "strata/status.h"

#include "util/json_text.h"

namespace strata {

// A record that does not decode: the path to the bad field and what is wrong with it.
class RecordError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// nlohmann's message without its "[json.exception.type_error.302] " prefix.
inline std::string JsonErrorText(const nlohmann::json::exception& e) {
  std::string text = e.what();
  size_t end = text.starts_with("[json.exception.") ? text.find("] ") : std::string::npos;
  return end == std::string::npos ? text : text.substr(end + 2);
}

// One field of a record of type T: how to put it into a JSON object and how to take it out.
template <typename T>
struct RecordField {
  std::string name;
  std::function<void(const T&, nlohmann::json*)> put;
  // Throws nlohmann::json::exception or RecordError when the field is missing (if required) or
  // mistyped.
  std::function<void(const nlohmann::json&, T*)> get;
};

template <typename T>
class RecordCodec {
 public:
  using KeyOf = std::function<std::string(const T&)>;
  using Check = std::function<Status(const T&)>;

  // `what` names the record type in errors. `key_of` (may be null: a nested record) gives the
  // key a record is stored under; `check` (may be null) is the type's consistency rule.
  RecordCodec(std::string what, std::vector<RecordField<T>> fields, KeyOf key_of = nullptr,
              Check check = nullptr)
      : what_(std::move(what)),
        fields_(std::move(fields)),
        key_of_(std::move(key_of)),
        check_(std::move(check)) {}

  nlohmann::json ToJson(const T& value) const {
    nlohmann::json j = nlohmann::json::object();
    for (const RecordField<T>& field : fields_) {
      field.put(value, &j);
    }
    return j;
  }

  std::string Encode(const T& value) const { return DumpJson(ToJson(value)); }

  // Throws RecordError naming the field on a missing or mistyped one (nested records use this).
  T FromJson(const nlohmann::json& j) const {
    if (!j.is_object()) {
      throw RecordError("a " + what_ + " is not an object");
    }
    T value{};
    for (const RecordField<T>& field : fields_) {
      try {
        field.get(j, &value);
      } catch (const nlohmann::json::exception& e) {
        throw RecordError("'" + field.name + "': " + JsonErrorText(e));
      } catch (const RecordError& e) {
        throw RecordError("'" + field.name + "': " + e.what());
      }
    }
    return value;
  }

  // Decodes the record stored under `key`.
  Result<T> Decode(const std::string& key, const std::string& text) const {
    const std::string name = what_ + " record " + key;
    nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return Status::Corruption(name + " is not a JSON object");
    }
    T value{};
    try {
      value = FromJson(j);
    } catch (const RecordError& e) {
      return Status::Corruption(name + ": " + e.what());
    }
    if (key_of_ && key_of_(value) != key) {
      return Status::Corruption(name + " names " + key_of_(value));
    }
    if (check_) {
      Status st = check_(value);
      if (!st.ok()) {
        return Status::Corruption(name + " is inconsistent: " + st.message());
      }
    }
    return value;
  }

 private:
  std::string what_;
  std::vector<RecordField<T>> fields_;
  KeyOf key_of_;
  Check check_;
};

// A field that must be present.
template <typename T, typename M>
RecordField<T> Required(const char* name, M T::*member) {
  return {name, [name, member](const T& v, nlohmann::json* j) { (*j)[name] = v.*member; },
          [name, member](const nlohmann::json& j, T* v) { j.at(name).get_to(v->*member); }};
}

// A field that may be absent (the member keeps its default) and is written only when it is not
// the default: fields added after a record type was first written, and sparse settings.
template <typename T, typename M>
RecordField<T> Optional(const char* name, M T::*member) {
  return {name,
          [name, member](const T& v, nlohmann::json* j) {
            if (!(v.*member == M{})) {
              (*j)[name] = v.*member;
            }
          },
          [name, member](const nlohmann::json& j, T* v) {
            if (j.contains(name)) {
              j.at(name).get_to(v->*member);
            }
          }};
}

// A std::optional field: absent means unset.
template <typename T, typename M>
RecordField<T> Optional(const char* name, std::optional<M> T::*member) {
  return {name,
          [name, member](const T& v, nlohmann::json* j) {
            if ((v.*member).has_value()) {
              (*j)[name] = *(v.*member);
            }
          },
          [name, member](const nlohmann::json& j, T* v) {
            if (j.contains(name)) {
              v->*member = j.at(name).get<M>();
            }
          }};
}

// A required list of nested records, each by its own codec.
template <typename T, typename U>
RecordField<T> Records(const char* name, std::vector<U> T::*member, const RecordCodec<U>* codec) {
  return {name,
          [name, member, codec](const T& v, nlohmann::json* j) {
            nlohmann::json list = nlohmann::json::array();
            for (const U& item : v.*member) {
              list.push_back(codec->ToJson(item));
            }
            (*j)[name] = std::move(list);
          },
          [name, member, codec](const nlohmann::json& j, T* v) {
            const nlohmann::json& list = j.at(name);
            if (!list.is_array()) {
              throw RecordError("not a list");
            }
            for (size_t i = 0; i < list.size(); ++i) {
              try {
                (v->*member).push_back(codec->FromJson(list[i]));
              } catch (const RecordError& e) {
                throw RecordError("item " + std::to_string(i) + ": " + e.what());
              }
            }
          }};
}

// A list of nested records added after its record type was first written: always written (so
// an empty list stays empty); a record without it gets `absent()` (what such records meant).
template <typename T, typename U>
RecordField<T> RecordsSince(const char* name, std::vector<U> T::*member,
                            const RecordCodec<U>* codec, std::vector<U> (*absent)()) {
  RecordField<T> field = Records(name, member, codec);
  auto get = std::move(field.get);
  field.get = [name, member, absent, get](const nlohmann::json& j, T* v) {
    if (j.contains(name)) {
      get(j, v);
    } else {
      v->*member = absent();
    }
  };
  return field;
}

// A field of a member struct, written flat into the outer record (InstanceRecord::info).
template <typename T, typename S>
RecordField<T> Within(S T::*outer, RecordField<S> field) {
  auto put = std::move(field.put);
  auto get = std::move(field.get);
  return {field.name, [outer, put](const T& v, nlohmann::json* j) { put(v.*outer, j); },
          [outer, get](const nlohmann::json& j, T* v) { get(j, &(v->*outer)); }};
}

}  // namespace strata

#endif  // STRATA_UTIL_RECORD_CODEC_H_
