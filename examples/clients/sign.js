// Node.js 18+: sign a call with the MD5 scheme and send it to chinaport-proxy.
const crypto = require('crypto');

const PROXY = process.env.PROXY_URL || 'http://127.0.0.1:8780';
const APP_SECRET = process.env.APP_SECRET || 'your-secret-key';

async function callUkey(method, args = {}) {
  const path = '/rpc';
  const body = JSON.stringify({ _method: method, args });
  const timestamp = Date.now().toString();
  const signature = crypto.createHash('md5')
    .update('POST' + path + timestamp + body + APP_SECRET, 'utf8')
    .digest('hex');
  const res = await fetch(PROXY + path, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      'X-Timestamp': timestamp,
      'X-Signature': signature,
    },
    body, // send exactly the bytes that were signed
  });
  return { status: res.status, requestId: res.headers.get('x-request-id'), body: await res.json() };
}

callUkey('cus-sec_SpcSignDataAsPEM', { inData: '报关数据 Hello' })
  .then((r) => console.log(JSON.stringify(r)))
  .catch((e) => { console.error(e); process.exit(1); });
