/** One conversation: the stored messages, the answer streaming now (its chunks drawn as they
 * come, its tool calls beside it), and the box to ask in. */

import { useEffect, useRef } from "preact/hooks";
import type { Schemas } from "../../api/client";
import type { ChatToolCall } from "../../ws/protocol";

export type Message = Schemas["stockfolio.assistant.v1.ChatMessage"];
type ToolCall = Schemas["stockfolio.assistant.v1.ToolCall"] | ChatToolCall;

/** The answer this page is streaming (or just streamed) over /ws/chat. */
export type Live = {
  sessionId: string | null;
  question: string;
  text: string;
  tools: ChatToolCall[];
  state: "streaming" | "done" | "stopped" | "failed";
  error?: string;
};

function Tools({ calls }: { calls: readonly ToolCall[] }) {
  if (calls.length === 0) return null;
  return (
    <ul class="tools" aria-label="Tools the assistant used">
      {calls.map((call) => (
        <li key={call.id} data-testid="chat-tool">
          <details>
            <summary>
              {call.isError ? "Tool failed: " : "Tool: "}
              {call.name}
              {call.result === undefined ? " (running…)" : ""}
            </summary>
            <pre>{JSON.stringify({ input: call.input, result: call.result }, null, 2)}</pre>
          </details>
        </li>
      ))}
    </ul>
  );
}

function Bubble(props: { role: string; text: string; tools?: readonly ToolCall[]; note?: string; streaming?: boolean }) {
  const assistant = props.role !== "user";
  if (assistant && !props.text && (props.tools?.length ?? 0) > 0 && !props.note && !props.streaming) {
    return (
      <li class="msg msg-tool">
        <Tools calls={props.tools ?? []} />
      </li>
    );
  }
  return (
    <li class={`msg msg-${assistant ? "assistant" : "user"}`} data-testid="chat-message" data-role={props.role}>
      <span class="visually-hidden">{assistant ? "Assistant:" : "You:"}</span>
      <Tools calls={props.tools ?? []} />
      <div
        class="msg-text"
        data-testid={assistant ? "chat-answer" : undefined}
        data-streaming={props.streaming ? "true" : undefined}
      >
        {props.text}
        {props.streaming && <span class="caret" aria-hidden="true" />}
      </div>
      {props.note && <p class="msg-note">{props.note}</p>}
    </li>
  );
}

export function Messages(props: { messages: Message[]; live: Live | null }) {
  const end = useRef<HTMLLIElement>(null);
  const { live } = props;
  // Follows the newest message, not the count: earlier pages put above stay where they are read.
  const newest = props.messages[props.messages.length - 1]?.id;
  useEffect(() => {
    end.current?.scrollIntoView({ block: "end" });
  }, [newest, live?.text.length, live?.tools.length]);

  return (
    <ol class="messages" aria-label="Conversation" aria-live="polite" aria-busy={live?.state === "streaming"}>
      {props.messages.map((m) => (
        <Bubble
          key={m.id}
          role={m.role ?? "assistant"}
          text={m.content ?? ""}
          tools={m.toolCalls ?? []}
          note={m.incomplete ? "This answer was cut short." : undefined}
        />
      ))}
      {live && (
        <>
          <Bubble role="user" text={live.question} />
          <Bubble
            role="assistant"
            text={live.text}
            tools={live.tools}
            streaming={live.state === "streaming"}
            note={
              live.state === "stopped"
                ? "Stopped. What was written so far is kept."
                : live.state === "failed"
                  ? live.error
                  : undefined
            }
          />
        </>
      )}
      <li ref={end} class="end" aria-hidden="true" />
    </ol>
  );
}
