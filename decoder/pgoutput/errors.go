package pgoutput

import "fmt"

// ParseError reports a malformed pgoutput message. It names the message
// type, the byte offset inside the message and the field being read.
type ParseError struct {
	Type   MessageType
	Offset int
	Field  string
	Reason string
}

// Error implements the error interface.
func (e *ParseError) Error() string {
	return fmt.Sprintf("decoder: malformed pgoutput %s message at offset %d (%s): %s", e.Type, e.Offset, e.Field, e.Reason)
}
