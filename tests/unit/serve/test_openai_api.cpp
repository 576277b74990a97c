// The OpenAI request parser and response builders of `mmtune serve` (serve/openai_api.h): what
// is accepted, what each malformed request is refused with (status and param), the JSON shapes.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <mmtune/serve/openai_api.h>

namespace mmtune::serve {
namespace test_openai_api {

using json = nlohmann::json;

int status_of(const std::string& body, bool chat = true) {
  try {
    if (chat) parse_chat_request(body);
    else parse_completion_request(body);
  } catch (const ApiError& e) {
    return e.status();
  }
  return 200;
}

std::string param_of(const std::string& body) {
  try {
    parse_chat_request(body);
  } catch (const ApiError& e) {
    return e.param();
  }
  return "";
}

TEST(OpenAiApi, ParsesAChatRequestWithTextAndImageParts) {
  const ChatRequest r = parse_chat_request(R"({"model": "m", "stream": true, "max_tokens": 7, "temperature": 0,
    "top_p": 0.5, "seed": 3, "stop": ["\n", "END"], "stream_options": {"include_usage": true},
    "messages": [{"role": "system", "content": "Be brief."},
                 {"role": "user", "content": [{"type": "text", "text": "What is it?"},
                                              {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                                              {"type": "text", "text": "Answer:"}]}]})");
  EXPECT_EQ(r.model, "m");
  EXPECT_TRUE(r.stream);
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].text, "What is it?\nAnswer:");
  EXPECT_EQ(r.messages[1].image, "data:image/png;base64,AAAA");
  EXPECT_EQ(*r.sampling.max_tokens, 7);
  EXPECT_EQ(*r.sampling.temperature, 0.0);
  EXPECT_EQ(*r.sampling.top_p, 0.5);
  EXPECT_EQ(*r.sampling.seed, 3u);
  EXPECT_EQ(r.sampling.stop, (std::vector<std::string>{"\n", "END"}));
}

TEST(OpenAiApi, RefusesMalformedRequestsNamingTheField) {
  const std::string ok_msgs = R"("messages": [{"role": "user", "content": "hi"}])";
  EXPECT_EQ(status_of("{nope"), 400);
  EXPECT_EQ(status_of("[1, 2]"), 400);
  EXPECT_EQ(status_of("{" + ok_msgs + "}"), 400);
  EXPECT_EQ(param_of("{" + ok_msgs + "}"), "model");
  EXPECT_EQ(param_of(R"({"model": 5, )" + ok_msgs + "}"), "model");
  EXPECT_EQ(param_of(R"({"model": "m", "messages": []})"), "messages");
  EXPECT_EQ(param_of(R"({"model": "m", "messages": [{"role": "robot", "content": "x"}]})"), "messages");
  EXPECT_EQ(param_of(R"({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]})"),
            "messages");  // the last message must be the user's
  EXPECT_EQ(param_of(R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "audio"}]}]})"), "messages");
  EXPECT_EQ(param_of(R"({"model": "m", "temperature": "hot", )" + ok_msgs + "}"), "temperature");
  EXPECT_EQ(param_of(R"({"model": "m", "temperature": 2.5, )" + ok_msgs + "}"), "temperature");
  EXPECT_EQ(param_of(R"({"model": "m", "top_p": 0, )" + ok_msgs + "}"), "top_p");
  EXPECT_EQ(param_of(R"({"model": "m", "max_tokens": 0, )" + ok_msgs + "}"), "max_tokens");
  EXPECT_EQ(param_of(R"({"model": "m", "max_tokens": 1.5, )" + ok_msgs + "}"), "max_tokens");
  EXPECT_EQ(param_of(R"({"model": "m", "n": 2, )" + ok_msgs + "}"), "n");
  EXPECT_EQ(param_of(R"({"model": "m", "stop": ["a","b","c","d","e"], )" + ok_msgs + "}"), "stop");
  EXPECT_EQ(param_of(R"({"model": "m", "stop": [""], )" + ok_msgs + "}"), "stop");
  EXPECT_EQ(param_of(R"({"model": "m", "stream": "yes", )" + ok_msgs + "}"), "stream");
  EXPECT_EQ(status_of(R"({"model": "m", "prompt": 3})", false), 400);
  EXPECT_EQ(status_of(R"({"model": "m", "prompt": ["a", "b"]})", false), 400);
  EXPECT_EQ(status_of(R"({"model": "m", "prompt": ["a"]})", false), 200);
  EXPECT_EQ(*parse_completion_request(R"({"model": "m", "prompt": "a"})").sampling.max_tokens, 16);  // OpenAI's default
}

TEST(OpenAiApi, DecodesBase64DataUrls) {
  EXPECT_FALSE(decode_data_url("/some/file.png").has_value());
  EXPECT_EQ(*decode_data_url("data:image/png;base64,aGVsbG8="), "hello");
  EXPECT_EQ(*decode_data_url("data:image/jpeg;base64,aGk="), "hi");
  EXPECT_THROW(decode_data_url("data:text/plain;base64,aGk="), ApiError);
  EXPECT_THROW(decode_data_url("data:image/png,raw"), ApiError);
  EXPECT_THROW(decode_data_url("data:image/png;base64,a*b"), ApiError);
  EXPECT_THROW(decode_data_url("data:image/png;base64,"), ApiError);
}

TEST(OpenAiApi, ResponsesHaveOpenAisShapes) {
  const json r = json::parse(chat_response_json("chatcmpl-1", "m", 5, "Hi", "stop", Usage{3, 2}));
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(r["choices"][0]["message"]["content"], "Hi");
  EXPECT_EQ(r["usage"]["total_tokens"], 5);
  const json c = json::parse(chat_chunk_json("chatcmpl-1", "m", 5, "", true, "", nullptr));
  EXPECT_EQ(c["object"], "chat.completion.chunk");
  EXPECT_EQ(c["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(c["choices"][0]["finish_reason"].is_null());
  EXPECT_FALSE(c.contains("usage"));
  const Usage u{1, 1};
  const json last = json::parse(completion_chunk_json("cmpl-1", "m", 5, "", "length", &u));
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(last["usage"]["completion_tokens"], 1);
  const json e = json::parse(error_json(ApiError(404, "no model x", "model", "model_not_found")));
  EXPECT_EQ(e["error"]["message"], "no model x");
  EXPECT_EQ(e["error"]["param"], "model");
  EXPECT_EQ(e["error"]["type"], "model_not_found");
  EXPECT_EQ(json::parse(error_json(ApiError(401, "bad key")))["error"]["type"], "authentication_error");
  EXPECT_EQ(json::parse(models_json({"a", "b"}, 1))["data"][1]["id"], "b");
  // invalid UTF-8 in generated text is replaced, never thrown
  EXPECT_NO_THROW(json::parse(completion_response_json("c", "m", 1, std::string("a\xff"), "stop", Usage{})));
  EXPECT_EQ(finish_reason("eos"), "stop");
  EXPECT_EQ(finish_reason("length"), "length");
}

}  // namespace test_openai_api
}  // namespace mmtune::serve
