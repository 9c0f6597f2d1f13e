// Package rawcodec is the grpc-go codec of our Go CRI clients: it moves the
// bytes its caller encodes and decodes itself, so the clients need no
// generated Go code for CRI.
package rawcodec

import (
	"fmt"

	"google.golang.org/grpc/encoding"
)

// codec passes *[]byte through untouched. It is registered under grpc's
// default codec name so calls keep content-type "application/grpc", exactly
// what kubelet sends (grpc.ForceCodec would append "+<name>").
type codec struct{}

func (codec) Marshal(v interface{}) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	return *b, nil
}

func (codec) Unmarshal(data []byte, v interface{}) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	*b = append([]byte(nil), data...)
	return nil
}

func (codec) Name() string { return "proto" }

// Register makes the codec grpc-go's for every call of this process.
func Register() { encoding.RegisterCodec(codec{}) }
