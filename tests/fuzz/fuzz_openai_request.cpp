// libFuzzer target: an HTTP request body of `mmtune serve` through the OpenAI API parser
// (serve::parse_chat_request / parse_completion_request, and decode_data_url on every image part),
// as the server parses each POST before anything touches the model. The parser's documented
// failure is ApiError (-> an HTTP 4xx); anything else is a finding. The parsed request's promises
// (openai_api.h) are checked too.
#include <mmtune/serve/openai_api.h>

#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmtune;
  const std::string body(reinterpret_cast<const char*>(data), size);
  try {
    const auto r = serve::parse_chat_request(body);
    if (r.messages.empty()) fuzz::finding("a chat request without messages was accepted");
    for (const auto& m : r.messages)
      if (!m.image.empty()) (void)serve::decode_data_url(m.image);
    const auto& s = r.sampling;
    if ((s.max_tokens && *s.max_tokens < 1) || (s.temperature && !(*s.temperature >= 0 && *s.temperature <= 2)) ||
        (s.top_p && !(*s.top_p > 0 && *s.top_p <= 1)) || s.stop.size() > 4)
      fuzz::finding("a sampling setting outside its documented range was accepted");
  } catch (const serve::ApiError& e) {
    if (e.status() != 400) fuzz::finding("the chat parser refused with a status other than 400");
  }
  try {
    const auto r = serve::parse_completion_request(body);
    for (const auto& stop : r.sampling.stop)
      if (stop.empty()) fuzz::finding("an empty stop string was accepted");
  } catch (const serve::ApiError& e) {
    if (e.status() != 400) fuzz::finding("the completion parser refused with a status other than 400");
  }
  return 0;
}
