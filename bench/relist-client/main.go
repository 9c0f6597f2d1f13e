// Command relist-client is the bench's kubelet relist on grpc-go, kubelet's
// own client stack: ListPodSandbox, ListContainers, then ContainerStatus of
// every container, one after another, as kubelet's PLEG does each second.
// The bench's grpc-js client spent more CPU per call than either runtime
// answering it, so it measured itself as much as the runtimes.
//
// Usage: relist-client -socket PATH [-timeout 30s]
//
// It dials once (the socket path as target, as kubelet did), then for each
// line "relist" on stdin runs one relist and answers one JSON line, timed
// here so the pipe to the bench is not part of the figure:
//
//	{"containers": 50, "ms": 31.4}
//	{"error": "ContainerStatus 3f2a...: rpc error: code = NotFound desc = ..."}
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"

	"gvcri/rawcodec"
)

// kubelet's maxMsgSize for CRI responses.
const maxRecvMsgSize = 16 * 1024 * 1024

const service = "/runtime.v1.RuntimeService/"

type answer struct {
	Containers int     `json:"containers"`
	Ms         float64 `json:"ms"`
	Error      string  `json:"error,omitempty"`
}

func main() {
	socket := flag.String("socket", "", "the CRI unix socket")
	timeout := flag.Duration("timeout", 30*time.Second, "deadline of each call")
	flag.Parse()
	if *socket == "" {
		fmt.Fprintln(os.Stderr, "relist-client: -socket is required")
		os.Exit(2)
	}
	rawcodec.Register()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	conn, err := grpc.DialContext(ctx, *socket,
		grpc.WithInsecure(),
		grpc.WithBlock(),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)))
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "relist-client: dial %s: %v\n", *socket, err)
		os.Exit(1)
	}
	defer conn.Close()

	out := json.NewEncoder(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if strings.TrimSpace(in.Text()) != "relist" {
			fmt.Fprintf(os.Stderr, "relist-client: unknown command %q\n", in.Text())
			os.Exit(2)
		}
		t0 := time.Now()
		n, err := relist(conn, *timeout)
		a := answer{Containers: n, Ms: float64(time.Since(t0).Nanoseconds()) / 1e6}
		if err != nil {
			a = answer{Error: err.Error()}
		}
		if err := out.Encode(a); err != nil {
			os.Exit(1)
		}
	}
}

func relist(conn *grpc.ClientConn, timeout time.Duration) (int, error) {
	empty := []byte{}
	var res []byte
	if err := call(conn, "ListPodSandbox", timeout, &empty, &res); err != nil {
		return 0, err
	}
	if err := call(conn, "ListContainers", timeout, &empty, &res); err != nil {
		return 0, err
	}
	ids, err := containerIDs(res)
	if err != nil {
		return 0, fmt.Errorf("ListContainers response: %w", err)
	}
	for _, id := range ids {
		req := appendBytesField(nil, 1, []byte(id))
		if err := call(conn, "ContainerStatus", timeout, &req, &res); err != nil {
			return 0, fmt.Errorf("ContainerStatus %s: %w", id, err)
		}
	}
	return len(ids), nil
}

func call(conn *grpc.ClientConn, rpc string, timeout time.Duration, req, res *[]byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := conn.Invoke(ctx, service+rpc, req, res); err != nil {
		return fmt.Errorf("%s: %w", rpc, err)
	}
	return nil
}

// containerIDs reads ListContainersResponse.containers (1) -> Container.id (1).
func containerIDs(msg []byte) ([]string, error) {
	var ids []string
	err := eachField(msg, func(num uint64, value []byte) error {
		if num != 1 {
			return nil
		}
		return eachField(value, func(n uint64, v []byte) error {
			if n == 1 {
				ids = append(ids, string(v))
			}
			return nil
		})
	})
	return ids, err
}

var errTruncated = errors.New("truncated protobuf message")

// eachField calls fn with every length-delimited field of msg and skips the others.
func eachField(msg []byte, fn func(num uint64, value []byte) error) error {
	for len(msg) > 0 {
		key, n := varint(msg)
		if n == 0 {
			return errTruncated
		}
		msg = msg[n:]
		switch key & 7 {
		case 0:
			if _, n = varint(msg); n == 0 {
				return errTruncated
			}
			msg = msg[n:]
		case 1, 5:
			size := 8
			if key&7 == 5 {
				size = 4
			}
			if len(msg) < size {
				return errTruncated
			}
			msg = msg[size:]
		case 2:
			size, n := varint(msg)
			if n == 0 || uint64(len(msg)-n) < size {
				return errTruncated
			}
			if err := fn(key>>3, msg[n:n+int(size)]); err != nil {
				return err
			}
			msg = msg[n+int(size):]
		default:
			return fmt.Errorf("unexpected wire type %d", key&7)
		}
	}
	return nil
}

// varint decodes one base-128 varint; n is 0 when msg ends inside it.
func varint(msg []byte) (v uint64, n int) {
	for i := 0; i < len(msg) && i < 10; i++ {
		v |= uint64(msg[i]&0x7f) << (7 * i)
		if msg[i] < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

func appendBytesField(b []byte, num uint64, value []byte) []byte {
	b = appendVarint(b, num<<3|2)
	b = appendVarint(b, uint64(len(value)))
	return append(b, value...)
}

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
