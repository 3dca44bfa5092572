"""Translation between the APIs: a client of one API served by an upstream of another.

Each API's request decodes into one `Conversation` and its answers into one sequence of typed
`AnswerEvent`s (`answer`, `conversation`); each API's codec (`codec.Codec`) decodes its own
wire into them and encodes them back into it. A translation is two codecs back to back, event
by event, never a buffered whole answer. A call within one API never comes here.

This package is pure (no I/O) and builds on `gateway.apis` and `gateway.streaming` only; routing
picks a translation for a target that speaks another API, and the relay runs it.
"""

from gateway.translation.answer import (
    AnswerEvent,
    End,
    Failure,
    ReasoningDelta,
    Start,
    Stop,
    StopReason,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from gateway.translation.codec import Codec, EncodeOptions, StreamDecoder, StreamEncoder
from gateway.translation.conversation import (
    Conversation,
    ImagePart,
    JsonSchemaFormat,
    Message,
    Part,
    ReasoningPart,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
)
from gateway.translation.translate import (
    StreamTranslation,
    TranslatedCall,
    Translation,
    register_codec,
    translation_for,
)

__all__ = [
    "AnswerEvent",
    "Codec",
    "Conversation",
    "EncodeOptions",
    "End",
    "Failure",
    "ImagePart",
    "JsonSchemaFormat",
    "Message",
    "Part",
    "ReasoningDelta",
    "ReasoningPart",
    "Start",
    "Stop",
    "StopReason",
    "StreamDecoder",
    "StreamEncoder",
    "StreamTranslation",
    "TextDelta",
    "TextPart",
    "Tool",
    "ToolCallDelta",
    "ToolCallPart",
    "ToolCallStart",
    "ToolChoice",
    "ToolResultPart",
    "TranslatedCall",
    "Translation",
    "Usage",
    "register_codec",
    "translation_for",
]

# The codecs, one per translatable API (each builds on the modules above only).
from gateway.translation import anthropic_messages, openai_chat, openai_responses

for _module in (openai_chat, anthropic_messages, openai_responses):
    register_codec(_module.CODEC)
