// The reference provider for `sesame-oidc-bench`: node oidc-provider with one client that may
// use client credentials, on 127.0.0.1:PORT (argv[2]). Its defaults otherwise: opaque access
// tokens kept by its in-memory adapter.
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 4100);
const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: 'bench',
    client_secret: 'bench-secret-bench-secret-bench-secret',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
  }],
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
  },
});
provider.listen(port, '127.0.0.1', () => {
  console.log(`reference listening on ${port}`);
});
