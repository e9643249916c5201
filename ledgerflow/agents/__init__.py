"""faust-streaming agents: decode → pure function → produce/write → commit. No business logic here."""
