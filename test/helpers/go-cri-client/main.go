// Command go-cri-client is the tests' CRI client on grpc-go, the stack of
// kubelet and cri-tools. It knows no CRI types: the test encodes requests
// and decodes responses with our proto, so this side stays a generic pipe.
//
// Usage: go-cri-client -socket PATH [-authority path|localhost]
//
// It dials once, then reads JSON lines on stdin, each one call:
//
//	{"id": "1", "method": "/runtime.v1.RuntimeService/Version", "request": "<base64>", "timeoutMs": 5000, "stream": {"max": 2}}
//
// and runs each at once, concurrently with the others, answering one JSON line
// per call on stdout when it ends:
//
//	{"id": "1", "code": 0, "message": "", "response": "<base64>"}       (unary)
//	{"id": "1", "code": 1, "message": "...", "responses": ["<base64>"]} (server stream)
//
// A stream call ends when the server ends it, or when the client has
// received stream.max messages and cancels it (code CANCELLED, as grpc-go
// reports a call its own caller cancelled).
//
// Each distinct :authority the client writes on the wire is reported once,
// before the answer of the call that sent it:
//
//	{"authority": "/run/gvisor-cri/gvisor-cri.sock"}
//
// so the test checks how grpc-go really dialled, not how we think it did.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"gvcri/rawcodec"
)

// kubelet's maxMsgSize for CRI responses.
const maxRecvMsgSize = 16 * 1024 * 1024

type streamSpec struct {
	Max int `json:"max"`
}

type request struct {
	ID        string      `json:"id"`
	Method    string      `json:"method"`
	Request   []byte      `json:"request"`
	TimeoutMs int64       `json:"timeoutMs"`
	Stream    *streamSpec `json:"stream,omitempty"`
}

type answer struct {
	ID        string   `json:"id"`
	Code      uint32   `json:"code"`
	Message   string   `json:"message"`
	Response  []byte   `json:"response,omitempty"`
	Responses [][]byte `json:"responses,omitempty"`
}

func main() {
	socket := flag.String("socket", "", "the CRI unix socket")
	authority := flag.String("authority", "path", `"path": dial the socket path as the target, so it is sent as :authority (kubelet <= 1.30, crictl <= 1.31); "localhost": grpc.WithAuthority("localhost") as newer clients`)
	dialTimeout := flag.Duration("dial-timeout", 30*time.Second, "how long to wait for the connection")
	flag.Parse()
	if *socket == "" {
		fmt.Fprintln(os.Stderr, "go-cri-client: -socket is required")
		os.Exit(2)
	}
	rawcodec.Register()

	var mu sync.Mutex
	out := json.NewEncoder(os.Stdout)
	emit := func(v interface{}) {
		mu.Lock()
		defer mu.Unlock()
		if err := out.Encode(v); err != nil {
			fmt.Fprintf(os.Stderr, "go-cri-client: write stdout: %v\n", err)
			os.Exit(1)
		}
	}
	seen := map[string]bool{}
	sawAuthority := func(a string) {
		mu.Lock()
		fresh := !seen[a]
		seen[a] = true
		mu.Unlock()
		if fresh {
			emit(map[string]string{"authority": a})
		}
	}

	// As kubelet's remote runtime client dialled: the target is the bare
	// socket path (passthrough resolver), the dialer ignores grpc's idea of
	// the address and connects to the unix socket.
	opts := []grpc.DialOption{
		grpc.WithInsecure(),
		grpc.WithBlock(),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "unix", addr)
			if err != nil {
				return nil, err
			}
			return recordAuthorities(c, sawAuthority), nil
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)),
	}
	switch *authority {
	case "path":
	case "localhost":
		opts = append(opts, grpc.WithAuthority("localhost"))
	default:
		fmt.Fprintf(os.Stderr, "go-cri-client: -authority must be path or localhost, not %q\n", *authority)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *dialTimeout)
	conn, err := grpc.DialContext(ctx, *socket, opts...)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go-cri-client: dial %s: %v\n", *socket, err)
		os.Exit(1)
	}
	defer conn.Close()

	var calls sync.WaitGroup
	in := bufio.NewReader(os.Stdin)
	for {
		line, err := in.ReadBytes('\n')
		if len(line) > 0 {
			var req request
			if jerr := json.Unmarshal(line, &req); jerr != nil {
				fmt.Fprintf(os.Stderr, "go-cri-client: bad request line: %v\n", jerr)
				os.Exit(2)
			}
			calls.Add(1)
			go func() {
				defer calls.Done()
				emit(run(conn, req))
			}()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "go-cri-client: read stdin: %v\n", err)
			os.Exit(1)
		}
	}
	calls.Wait()
}

func run(conn *grpc.ClientConn, req request) answer {
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if req.TimeoutMs > 0 {
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutMs)*time.Millisecond)
	}
	defer cancel()
	if req.Stream == nil {
		var res []byte
		err := conn.Invoke(ctx, req.Method, &req.Request, &res)
		a := withStatus(answer{ID: req.ID}, err)
		if err == nil {
			a.Response = res
		}
		return a
	}

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	a := answer{ID: req.ID, Responses: [][]byte{}}
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, req.Method)
	if err == nil {
		err = s.SendMsg(&req.Request)
	}
	if err == nil {
		err = s.CloseSend()
	}
	for err == nil {
		var res []byte
		if err = s.RecvMsg(&res); err != nil {
			break
		}
		a.Responses = append(a.Responses, res)
		if req.Stream.Max > 0 && len(a.Responses) >= req.Stream.Max {
			stop()
			// What grpc-go makes of its own cancel: a receive fails with
			// CANCELLED once messages already buffered are read.
			for err == nil {
				err = s.RecvMsg(&res)
			}
		}
	}
	if err == io.EOF {
		err = nil
	}
	return withStatus(a, err)
}

func withStatus(a answer, err error) answer {
	st, _ := status.FromError(err)
	a.Code = uint32(st.Code())
	a.Message = st.Message()
	return a
}

// recordingConn reads the HTTP/2 frames grpc-go writes, before they leave,
// and reports the :authority of every request header block: the report so
// comes before the server can answer the request.
type recordingConn struct {
	net.Conn
	mu      sync.Mutex
	pending []byte
	block   []byte
	decoder *hpack.Decoder
	saw     func(string)
	// pastPreface: the 24-byte client preface is behind; broken: a block did not decode, stop reading.
	pastPreface, broken bool
}

func recordAuthorities(c net.Conn, saw func(string)) net.Conn {
	return &recordingConn{Conn: c, decoder: hpack.NewDecoder(4096, nil), saw: saw}
}

func (c *recordingConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.read(b)
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// read takes the next bytes of the client's side of the connection: the
// preface, then frames. Only header blocks (HEADERS and CONTINUATION) are
// decoded, all of them, to keep the HPACK table as the server's.
func (c *recordingConn) read(b []byte) {
	if c.broken {
		return
	}
	c.pending = append(c.pending, b...)
	if !c.pastPreface {
		if len(c.pending) < len(http2.ClientPreface) {
			return
		}
		c.pending = c.pending[len(http2.ClientPreface):]
		c.pastPreface = true
	}
	for len(c.pending) >= 9 {
		size := int(c.pending[0])<<16 | int(c.pending[1])<<8 | int(c.pending[2])
		if len(c.pending) < 9+size {
			return
		}
		typ, flags, payload := http2.FrameType(c.pending[3]), http2.Flags(c.pending[4]), c.pending[9:9+size]
		switch typ {
		case http2.FrameHeaders:
			if flags.Has(http2.FlagHeadersPadded) && len(payload) > 0 {
				payload = payload[1 : len(payload)-int(payload[0])]
			}
			if flags.Has(http2.FlagHeadersPriority) {
				payload = payload[5:]
			}
			c.block = append(c.block[:0], payload...)
		case http2.FrameContinuation:
			c.block = append(c.block, payload...)
		}
		if (typ == http2.FrameHeaders || typ == http2.FrameContinuation) && flags.Has(http2.FlagHeadersEndHeaders) {
			fields, err := c.decoder.DecodeFull(c.block)
			if err != nil {
				fmt.Fprintf(os.Stderr, "go-cri-client: cannot decode own header block: %v\n", err)
				c.broken = true
				return
			}
			for _, f := range fields {
				if f.Name == ":authority" {
					c.saw(f.Value)
				}
			}
		}
		c.pending = c.pending[9+size:]
	}
}
