/**
 * Each endpoint's request body, written once as a TypeBox schema: fastify validates bodies with it (Ajv, types only:
 * the ranges are `@pagoda/sampling`'s, which the engine checks with the parameter's name), the handlers get its
 * static type, and `/openapi.json` describes it. Fields the server does not know are let through and ignored, as
 * vLLM's server does; `null` means "not given" wherever OpenAI's API allows it.
 *
 * A union's `x-expected` says in words what the field takes, for the error message when a value fits no branch.
 */
import Type, { type Static, type TSchema } from 'typebox';

const nullable = <T extends TSchema>(schema: T, description?: string) =>
  Type.Optional(Type.Union([schema, Type.Null()], description === undefined ? {} : { description }));

const tokenIds = Type.Array(Type.Integer({ minimum: 0 }));

const stopSchema = Type.Union([Type.String(), Type.Array(Type.String())], {
  'x-expected': 'a string or an array of strings',
  description: 'Up to any number of sequences where generation stops; the stop string is left out of the output.',
});

const jsonSchemaObject = Type.Record(Type.String(), Type.Unknown(), { 'x-expected': 'a JSON schema (an object)' });

/** OpenAI's `response_format`: `text`, `json_object`, or `json_schema` with its schema. */
export const ResponseFormat = Type.Object(
  {
    type: Type.String({ description: 'text, json_object or json_schema' }),
    json_schema: Type.Optional(
      Type.Object({
        name: Type.Optional(Type.String()),
        description: Type.Optional(Type.String()),
        schema: Type.Optional(jsonSchemaObject),
        strict: nullable(Type.Boolean()),
      }),
    ),
  },
  { description: 'Constrains the output to JSON (any object, or one schema), by grammar.' },
);

/**
 * The ways to constrain an output, all decoded by XGrammar: OpenAI's `response_format`, vLLM's `structured_outputs`
 * and its older `guided_*` fields. A request gives at most one of them.
 */
function structuredOutputFields() {
  return {
    response_format: nullable(ResponseFormat),
    structured_outputs: nullable(
      Type.Object(
        {
          json: nullable(Type.Union([jsonSchemaObject, Type.String()], { 'x-expected': 'a JSON schema (an object or its text)' })),
          json_object: nullable(Type.Boolean()),
          regex: nullable(Type.String()),
          choice: nullable(Type.Array(Type.String())),
          grammar: nullable(Type.String(), 'EBNF, start rule root (XGrammar).'),
          structural_tag: nullable(Type.Union([jsonSchemaObject, Type.String()], { 'x-expected': 'a structural tag (an object or its text)' })),
        },
        { description: "vLLM's structured outputs: exactly one of its fields." },
      ),
    ),
    guided_json: nullable(Type.Union([jsonSchemaObject, Type.String()], { 'x-expected': 'a JSON schema (an object or its text)' })),
    guided_regex: nullable(Type.String()),
    guided_choice: nullable(Type.Array(Type.String())),
    guided_grammar: nullable(Type.String()),
  };
}

/** The sampling and generation fields both endpoints share: OpenAI's and vLLM's extras. */
const generationFields = {
  model: nullable(Type.String(), 'The served model name; may be left out.'),
  max_tokens: nullable(Type.Integer(), 'Most tokens to generate; default: the rest of the context.'),
  n: nullable(Type.Integer(), 'Completions per prompt, at most 128.'),
  stream: nullable(Type.Boolean()),
  stream_options: nullable(Type.Object({ include_usage: nullable(Type.Boolean()) })),
  temperature: nullable(Type.Number(), 'In [0, 2]; 0 is greedy.'),
  top_p: nullable(Type.Number(), 'In (0, 1].'),
  top_k: nullable(Type.Integer(), '-1 or 0: off.'),
  min_p: nullable(Type.Number(), 'In [0, 1].'),
  repetition_penalty: nullable(Type.Number(), '> 0; 1 is off.'),
  frequency_penalty: nullable(Type.Number(), 'In [-2, 2].'),
  presence_penalty: nullable(Type.Number(), 'In [-2, 2].'),
  seed: nullable(Type.Integer()),
  logit_bias: nullable(Type.Record(Type.String(), Type.Number(), { 'x-expected': 'an object of token ids to numbers' })),
  stop: nullable(stopSchema),
  stop_token_ids: nullable(tokenIds),
  ignore_eos: nullable(Type.Boolean()),
  min_tokens: nullable(Type.Integer()),
  include_stop_str_in_output: nullable(Type.Boolean()),
  priority: nullable(Type.Integer(), 'With --scheduling-policy priority: lower runs first.'),
  user: nullable(Type.String()),
  skip_special_tokens: nullable(Type.Boolean(), 'Leave special tokens out of the text (default true).'),
  spaces_between_special_tokens: nullable(Type.Boolean(), 'Accepted for vLLM clients; no effect with tokenizer.json tokenizers.'),
  cache_salt: nullable(Type.String(), 'Prefix-cache entries are shared only between requests with the same salt.'),
  prompt_logprobs: nullable(Type.Integer(), "vLLM's: each prompt token's logprob and this many top alternatives (prompts are then computed whole)."),
  ...structuredOutputFields(),
};

export const CompletionRequest = Type.Object(
  {
    prompt: Type.Union([Type.String(), Type.Array(Type.String()), tokenIds, Type.Array(tokenIds)], {
      'x-expected': 'a string, an array of strings, an array of token ids or an array of such arrays',
    }),
    echo: nullable(Type.Boolean()),
    logprobs: nullable(Type.Integer(), 'Top logprobs per token, up to --max-logprobs.'),
    suffix: nullable(Type.String(), 'Not supported.'),
    best_of: nullable(Type.Integer(), 'Only best_of = n (vLLM V1 has no best_of either).'),
    add_special_tokens: nullable(Type.Boolean(), 'Add the tokenizer’s special tokens (BOS) to a text prompt (default true).'),
    ...generationFields,
  },
  { description: "OpenAI's legacy completions request, with vLLM's extra sampling fields." },
);
export type CompletionRequest = Static<typeof CompletionRequest>;

const contentPart = Type.Object({ type: Type.String(), text: Type.Optional(Type.String()) });

export const ChatMessage = Type.Object({
  role: Type.String(),
  content: Type.Optional(
    Type.Union([Type.String(), Type.Array(contentPart), Type.Null()], { 'x-expected': 'a string or an array of text parts' }),
  ),
  name: nullable(Type.String()),
});
export type ChatMessage = Static<typeof ChatMessage>;

const messages = Type.Array(ChatMessage, { description: 'The conversation, rendered with the chat template.' });

/** A function tool, as chat completions take it. */
export const FunctionTool = Type.Object({
  type: Type.String({ description: 'function' }),
  function: Type.Object({
    name: Type.String(),
    description: Type.Optional(Type.String()),
    parameters: Type.Optional(jsonSchemaObject),
    strict: nullable(Type.Boolean()),
  }),
});
export type FunctionTool = Static<typeof FunctionTool>;

/** The chat-template fields chat completions and /tokenize share. */
const templateFields = {
  add_generation_prompt: nullable(Type.Boolean()),
  chat_template: nullable(Type.String(), 'A Jinja template replacing the model’s; needs --trust-request-chat-template.'),
  chat_template_kwargs: nullable(Type.Record(Type.String(), Type.Unknown(), { 'x-expected': 'an object' })),
  tools: nullable(Type.Array(FunctionTool), 'Function tools: passed to the chat template; calls come back as tool_calls.'),
};

/** `tool_choice`: none, auto, required, or one named function. */
const ToolChoice = Type.Union(
  [Type.String(), Type.Object({ type: Type.String(), function: Type.Object({ name: Type.String() }) })],
  { 'x-expected': '"none", "auto", "required" or {"type": "function", "function": {"name": ...}}' },
);

export const ChatCompletionRequest = Type.Object(
  {
    messages,
    max_completion_tokens: nullable(Type.Integer(), 'OpenAI’s newer name for max_tokens.'),
    logprobs: nullable(Type.Boolean()),
    top_logprobs: nullable(Type.Integer(), 'With logprobs: alternatives per token, up to --max-logprobs.'),
    tool_choice: nullable(ToolChoice),
    parallel_tool_calls: nullable(Type.Boolean()),
    ...templateFields,
    ...generationFields,
  },
  { description: "OpenAI's chat completions request, with vLLM's extra sampling fields." },
);
export type ChatCompletionRequest = Static<typeof ChatCompletionRequest>;

export const TokenizeRequest = Type.Object(
  {
    model: nullable(Type.String()),
    prompt: nullable(Type.String()),
    messages: Type.Optional(messages),
    add_special_tokens: nullable(Type.Boolean()),
    ...templateFields,
  },
  { description: 'A text (prompt) or a conversation (messages) to tokenize, as vLLM’s /tokenize.' },
);
export type TokenizeRequest = Static<typeof TokenizeRequest>;

export const DetokenizeRequest = Type.Object({ model: nullable(Type.String()), tokens: tokenIds });
export type DetokenizeRequest = Static<typeof DetokenizeRequest>;

export const EmbeddingRequest = Type.Object(
  {
    model: nullable(Type.String()),
    input: Type.Union([Type.String(), Type.Array(Type.String()), tokenIds, Type.Array(tokenIds)], {
      'x-expected': 'a string, an array of strings, an array of token ids, or an array of token-id arrays',
      description: 'What to embed: one vector per text or token-id array.',
    }),
    encoding_format: nullable(
      Type.Union([Type.Literal('float'), Type.Literal('base64')], { 'x-expected': '"float" or "base64"', description: 'base64: the float32 little-endian bytes.' }),
    ),
    dimensions: nullable(Type.Integer(), 'Keep the first this many dimensions (Matryoshka), renormalized when the pooler normalizes.'),
    user: nullable(Type.String()),
    truncate_prompt_tokens: nullable(Type.Integer(), "vLLM's: keep only each input's last this many tokens (-1: max_model_len)."),
    priority: nullable(Type.Integer()),
  },
  { description: "OpenAI's embeddings request, on a model served with --runner pooling." },
);
export type EmbeddingRequest = Static<typeof EmbeddingRequest>;

/** A function tool as the Responses API gives it (flat: `name` beside `type`). */
const ResponsesFunctionTool = Type.Object({
  type: Type.String({ description: 'function' }),
  name: Type.Optional(Type.String()),
  description: nullable(Type.String()),
  parameters: nullable(jsonSchemaObject),
  strict: nullable(Type.Boolean()),
});

export const ResponsesRequest = Type.Object(
  {
    model: nullable(Type.String()),
    input: Type.Union([Type.String(), Type.Array(Type.Record(Type.String(), Type.Unknown()))], {
      'x-expected': 'a string or an array of input items',
    }),
    instructions: nullable(Type.String(), 'A system message before the input (not carried to later turns).'),
    previous_response_id: nullable(Type.String(), 'Continue from a stored response: its conversation comes first.'),
    store: nullable(Type.Boolean(), 'Keep this response for previous_response_id (default true; bounded, in memory).'),
    tools: nullable(Type.Array(ResponsesFunctionTool)),
    tool_choice: nullable(
      Type.Union([Type.String(), Type.Object({ type: Type.String(), name: Type.Optional(Type.String()) })], {
        'x-expected': '"none", "auto", "required" or {"type": "function", "name": ...}',
      }),
    ),
    parallel_tool_calls: nullable(Type.Boolean()),
    text: nullable(
      Type.Object({
        format: Type.Optional(
          Type.Object({
            type: Type.String({ description: 'text, json_object or json_schema' }),
            name: Type.Optional(Type.String()),
            schema: Type.Optional(jsonSchemaObject),
            strict: nullable(Type.Boolean()),
          }),
        ),
      }),
    ),
    reasoning: nullable(Type.Object({ effort: nullable(Type.String()), summary: nullable(Type.String()) })),
    max_output_tokens: nullable(Type.Integer()),
    temperature: nullable(Type.Number()),
    top_p: nullable(Type.Number()),
    top_k: nullable(Type.Integer()),
    min_p: nullable(Type.Number()),
    repetition_penalty: nullable(Type.Number()),
    seed: nullable(Type.Integer()),
    stream: nullable(Type.Boolean()),
    metadata: nullable(Type.Record(Type.String(), Type.Unknown())),
    user: nullable(Type.String()),
  },
  { description: "OpenAI's Responses API, its stateless core as vLLM serves it, with previous_response_id." },
);
export type ResponsesRequest = Static<typeof ResponsesRequest>;
