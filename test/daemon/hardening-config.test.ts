// Registry credentials in the config file: per host, as containerd's hosts.toml
// has them; checked at load, and never printed back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, configToToml, defaultConfig, parseTomlConfig, REDACTED } from '../../daemon/config.js';

const mirrored = '[registries."docker.io"]\nmirrors = ["https://mirror.example", "http://127.0.0.1:5000"]\n';

test('a mirror host takes username and password, or auth, in its own table', () => {
  const c = parseTomlConfig(`${mirrored}[registries."mirror.example"]\nusername = "bot"\npassword = "p"\n[registries."127.0.0.1:5000"]\nauth = "${Buffer.from('u:p').toString('base64')}"\n`, 'c.toml');
  assert.deepEqual(c.registries['mirror.example'], { mirrors: [], insecure: false, username: 'bot', password: 'p' });
  assert.deepEqual(c.registries['127.0.0.1:5000'], { mirrors: [], insecure: false, auth: Buffer.from('u:p').toString('base64') });
  assert.deepEqual(c.registries['docker.io']!.mirrors, ['https://mirror.example', 'http://127.0.0.1:5000'], 'mirrors stay a list of URLs');
});

test('bad credential entries name the key and the problem', () => {
  const cases: [string, RegExp][] = [
    ['[registries."a.b"]\nusername = "u"', /registries."a.b": username and password go together/],
    ['[registries."a.b"]\npassword = "p"', /registries."a.b": username and password go together/],
    ['[registries."a.b"]\nusername = "u"\npassword = "p"\nauth = "dTpw"', /either auth or username and password/],
    ['[registries."a.b"]\nauth = "bm9jb2xvbg=="', /registries."a.b".auth: not base64 of "user:password"/],
    ['[registries."a.b"]\npassword = 3', /registries."a.b".password: expected a non-empty string/],
    // Credentials over plain HTTP to a remote mirror would cross the network in clear.
    ['[registries."docker.io"]\nmirrors = ["http://mirror.example"]\n[registries."mirror.example"]\nusername = "u"\npassword = "p"', /mirrors: http:\/\/mirror.example is plain HTTP but registries."mirror.example" has credentials/],
  ];
  for (const [text, re] of cases) {
    assert.throws(() => parseTomlConfig(text, 'c.toml'), (err: unknown) => err instanceof ConfigError && re.test(err.message), text);
  }
  // Allowed: the mirror's host is configured insecure, or on loopback.
  parseTomlConfig('[registries."docker.io"]\nmirrors = ["http://mirror.example"]\n[registries."mirror.example"]\ninsecure = true\nusername = "u"\npassword = "p"', 'c.toml');
  parseTomlConfig('[registries."docker.io"]\nmirrors = ["http://127.0.0.1:5000"]\n[registries."127.0.0.1:5000"]\nusername = "u"\npassword = "p"', 'c.toml');
});

test('the printed config (gvisor-cri config, Status verbose) holds no secret', () => {
  const c = defaultConfig();
  const auth = Buffer.from('bot:hunter2').toString('base64');
  c.registries = { 'a.example': { mirrors: [], insecure: false, username: 'bot', password: 'hunter2' }, 'b.example': { mirrors: [], insecure: false, auth } };
  const text = configToToml(c);
  assert.ok(!text.includes('hunter2') && !text.includes(auth), text);
  assert.ok(text.includes('username = "bot"') && text.includes(REDACTED));
});

test('limits have their documented defaults and bounds', () => {
  const c = defaultConfig();
  assert.equal(c.imageMaxLayers, 128);
  assert.equal(c.imageMaxUnpackedMib, 16384);
  assert.equal(c.maxStreamSessions, 128);
  assert.throws(() => parseTomlConfig('image_max_layers = 0', 'c.toml'), /image-max-layers: must be between 1 and 4096/);
  assert.throws(() => parseTomlConfig('max_stream_sessions = 0', 'c.toml'), /max-stream-sessions: must be between 1 and 65536/);
});
