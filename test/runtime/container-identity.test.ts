// The pure halves of issue 15's settings (the end-to-end checks are in
// test/daemon/conformance.test.ts): the process's groups under Merge and
// Strict, recursive read-only volumes, user namespace requests, and the
// image files (/etc/passwd, /etc/group) the user is resolved from.
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveUser } from '../../runtime/spec/container-config.js';
import { ImageFileCache, submountsOf } from '../../runtime/spec/path-mounts.js';
import { refuseUserNamespace } from '../../runtime/spec/user-namespace.js';
import type { UserNamespace__Output } from '../../cri-api/generated/runtime/v1/UserNamespace.js';

const files = {
  passwd: 'root:x:0:0::/:/bin/sh\nuser:x:1000:1000::/:/bin/sh\n',
  group: 'root:x:0:\nbig:x:50000:user\nsmall:x:1234:other,user\nsmall-again:x:1234:user\n',
};

test('groups: sorted ascending without duplicates; Merge (the default) adds the image\'s, Strict only the primary and supplemental ones', () => {
  assert.deepEqual(resolveUser({ runAsUsername: 'user', supplementalGroups: [] }, '', files), { uid: 1000, gid: 1000, additionalGids: [1000, 1234, 50000] });
  assert.deepEqual(resolveUser({ runAsUser: '1000', supplementalGroups: ['60000', '1234', '5'], policy: 'Merge' }, '', files).additionalGids, [5, 1000, 1234, 50000, 60000]);
  assert.deepEqual(resolveUser({ runAsUser: '1000', runAsGroup: '70000', supplementalGroups: ['5'], policy: 'Strict' }, '', files), { uid: 1000, gid: 70000, additionalGids: [5, 70000] });
  // The image's User with a group works the same way.
  assert.deepEqual(resolveUser({ supplementalGroups: [], policy: 'Strict' }, 'user:big', files), { uid: 1000, gid: 50000, additionalGids: [50000] });
});

test('a recursive read-only volume gets no submounts of its own; a plain read-only one does', async () => {
  const mountinfo = '1 0 0:1 / / rw - ext4 x rw\n2 1 0:2 / /srv/vol/sub rw - tmpfs none rw\n';
  const rro = await submountsOf([{ hostPath: '/srv/vol', containerPath: '/v', readonly: true, recursiveReadOnly: true }], mountinfo);
  assert.deepEqual(rro, []);
  const ro = await submountsOf([{ hostPath: '/srv/vol', containerPath: '/v', readonly: true }], mountinfo);
  assert.deepEqual(ro, [{ destination: '/v/sub', type: 'bind', source: '/srv/vol/sub', options: ['rbind', 'rw'] }]);
});

test('user namespaces: NODE and POD without mappings pass; CONTAINER, TARGET and POD with mappings are refused', () => {
  const field = 'x.userns_options';
  const mapping = [{ host_id: 65536, container_id: 0, length: 65536 }];
  refuseUserNamespace(null, field);
  refuseUserNamespace({ mode: 'NODE', uids: [], gids: [] }, field);
  refuseUserNamespace({ mode: 'POD', uids: [], gids: [] }, field);
  const refused: [UserNamespace__Output, RegExp][] = [
    [{ mode: 'CONTAINER', uids: [], gids: [] }, /x\.userns_options\.mode CONTAINER/],
    [{ mode: 'TARGET', uids: [], gids: [] }, /x\.userns_options\.mode TARGET/],
    [{ mode: 'POD', uids: mapping, gids: mapping }, /x\.userns_options: user namespaces \(hostUsers: false\) are not supported/],
  ];
  for (const [userns, message] of refused) {
    assert.throws(() => refuseUserNamespace(userns, field), (err: { code: number; message: string }) => {
      assert.equal(err.code, 3);
      assert.match(err.message, message);
      return true;
    });
  }
});

test('image files are read once per snapshot, links resolved inside it; a file not found is looked for again', async () => {
  const root = await mkdtemp(join(tmpdir(), 'image-files-'));
  try {
    await mkdir(join(root, 'etc'));
    await writeFile(join(root, 'etc', 'passwd.real'), 'root:x:0:0::/root:/bin/sh\n');
    await symlink('/etc/passwd.real', join(root, 'etc', 'passwd'));
    const cache = new ImageFileCache();
    assert.equal(await cache.read(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
    assert.equal(await cache.read(root, 'etc/group'), undefined);
    // Snapshots never change: the kept text answers even if the file changed under it.
    await writeFile(join(root, 'etc', 'passwd.real'), 'changed\n');
    assert.equal(await cache.read(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
    await writeFile(join(root, 'etc', 'group'), 'root:x:0:\n');
    assert.equal(await cache.read(root, 'etc/group'), 'root:x:0:\n');
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
