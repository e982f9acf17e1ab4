# syntax=docker/dockerfile:1
# One Dockerfile, one target per service: gateway, worker, simulator.
#   docker build --target gateway -t wxrelay-gateway .
# Build stage: the whole workspace with dev dependencies, compiled; then `pnpm deploy` copies each
# service with only its production dependencies into /out/<service>.

ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
ENV CI=true
RUN npm install -g pnpm@11.28.11
WORKDIR /repo
COPY package.json pnpm-lock.yaml pnpm-workspace.yaml .npmrc ./
COPY packages/shared/package.json packages/shared/
COPY packages/testkit/package.json packages/testkit/
COPY packages/simulator/package.json packages/simulator/
COPY services/gateway/package.json services/gateway/
COPY services/worker/package.json services/worker/
COPY bench/package.json bench/
RUN pnpm install --frozen-lockfile
COPY . .
RUN pnpm build \
 && pnpm --filter @wxrelay/gateway deploy --prod /out/gateway \
 && pnpm --filter @wxrelay/worker deploy --prod /out/worker \
 && pnpm --filter @wxrelay/simulator deploy --prod /out/simulator

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
USER node

FROM runtime AS gateway
COPY --from=build --chown=node:node /out/gateway /app
EXPOSE 3000 9464
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/main.js"]

FROM runtime AS worker
COPY --from=build --chown=node:node /out/worker /app
EXPOSE 9465
# GET /healthz on the private listener: Redis answers, the worker runs, no 45009 pause (no token
# needed). METRICS_PORT=0 leaves nothing to ask.
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD ["node", "-e", "const p=process.env.METRICS_PORT||'9465';if(p==='0')process.exit(0);fetch('http://127.0.0.1:'+p+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/main.js"]

FROM runtime AS simulator
COPY --from=build --chown=node:node /out/simulator /app
EXPOSE 4000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.SIM_PORT||4000)+'/').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/cli.js", "serve"]
