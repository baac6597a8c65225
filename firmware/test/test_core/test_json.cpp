#include "doctest_compat.h"

#include <string>

#include "json.h"

using namespace vesper;

TEST_CASE("json: members of a flat object") {
    auto o = JsonObject::parse(R"( {"cmd":"ota", "n": 42, "ok": true, "none": null, "x": -1.5e3} )");
    REQUIRE(o);
    CHECK(o->string("cmd") == "ota");
    CHECK(o->unsigned_integer("n") == 42u);
    CHECK(o->find("ok")->kind == JsonMember::Kind::Bool);
    CHECK(o->find("none")->kind == JsonMember::Kind::Null);
    CHECK(o->find("x")->text == "-1.5e3");
    CHECK_FALSE(o->unsigned_integer("x"));
    CHECK_FALSE(o->string("n"));
    CHECK_FALSE(o->find("missing"));
}

TEST_CASE("json: escapes are decoded") {
    auto o = JsonObject::parse(R"({"s":"a\"b\\c\/d\n\u00e9\ud83d\ude00"})");
    REQUIRE(o);
    CHECK(o->string("s") == "a\"b\\c/d\n\xC3\xA9\xF0\x9F\x98\x80");
}

TEST_CASE("json: nested values are skipped, the members after them kept") {
    auto o = JsonObject::parse(R"({"builds":[{"parts":[{"path":"a.bin","offset":4096}]}],"version":"1.0.2"})");
    REQUIRE(o);
    CHECK(o->find("builds")->kind == JsonMember::Kind::Nested);
    CHECK(o->string("version") == "1.0.2");
}

TEST_CASE("json: bad input is refused, never half read") {
    for (const char* bad : {"", "[]", "\"x\"", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{\"a\":1} x",
                            "{\"a\":tru}", "{\"a\":\"\\x\"}", "{\"a\":\"\\ud800\"}", "{a:1}", "{\"a\":01x}",
                            "{\"a\":\"line\nbreak\"}", "{\"a\":-}", "{\"a\":1.}"}) {
        INFO("input: " << bad);
        CHECK_FALSE(JsonObject::parse(bad));
    }
}

TEST_CASE("json: size and depth are bounded") {
    std::string deep = "{\"a\":";
    for (int i = 0; i < 40; ++i) deep += "[";
    for (int i = 0; i < 40; ++i) deep += "]";
    deep += "}";
    CHECK_FALSE(JsonObject::parse(deep));
    std::string big = "{\"a\":\"" + std::string(kMaxJsonBytes, 'x') + "\"}";
    CHECK_FALSE(JsonObject::parse(big));
    auto o = JsonObject::parse("{\"n\":18446744073709551616}");
    REQUIRE(o);
    CHECK_FALSE(o->unsigned_integer("n"));  // one past u64
    CHECK(JsonObject::parse("{\"n\":18446744073709551615}")->unsigned_integer("n") == UINT64_MAX);
}

TEST_CASE("json: quoting") {
    CHECK(json_quote("1.0.1") == "\"1.0.1\"");
    CHECK(json_quote("a\"b\\c\n") == "\"a\\\"b\\\\c\\n\"");
    CHECK(json_quote(std::string("\x01\t", 2)) == "\"\\u0001\\t\"");
}
