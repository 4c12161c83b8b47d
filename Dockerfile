# One image for every DistribuStream service: `docker run IMAGE tracker|seeder|checksum|
# dashboard|dsclient|healthcheck|keys …` (see the README's "Docker"). No key or token is
# in the image: a deployment makes them once with `keys init` into a volume or Secret.

# --- the workspace manifests, shared by the two installs below
FROM node:20-bookworm-slim AS manifests
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/pdtp/package.json packages/pdtp/
COPY packages/runtime/package.json packages/runtime/
COPY packages/data-plane/package.json packages/data-plane/
COPY packages/tracker-link/package.json packages/tracker-link/
COPY packages/swarm-store/package.json packages/swarm-store/
COPY packages/client/package.json packages/client/
COPY services/checksum/package.json services/checksum/
COPY services/seeder/package.json services/seeder/
COPY services/tracker/package.json services/tracker/
COPY services/dashboard/package.json services/dashboard/
COPY cmd/distribustream/package.json cmd/distribustream/
COPY test/package.json test/

# --- production dependencies only (the tests' workspace link removed: not in the image), gathered
# in /deps with those npm installed inside a workspace (a version other than the root's)
FROM manifests AS deps
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
  && rm -f node_modules/@distribustream/tests \
  && npm cache clean --force \
  && mkdir /deps && mv node_modules /deps/ \
  && for d in packages/*/node_modules services/*/node_modules cmd/*/node_modules; do \
       if [ -d "$d" ]; then mkdir -p "/deps/$(dirname "$d")" && mv "$d" "/deps/$d"; fi; \
     done

# --- compile, then pick what runs (no tests, declarations or source maps)
FROM manifests AS build
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.base.json ./
COPY packages/ packages/
COPY services/ services/
COPY cmd/ cmd/
COPY scripts/image-files.mjs scripts/bundle-dsclient.mjs scripts/
RUN npx tsc -b cmd/distribustream services/dashboard/web \
  && node scripts/bundle-dsclient.mjs \
  && node scripts/image-files.mjs /out

# --- the image
FROM node:20-bookworm-slim
LABEL org.opencontainers.image.title="DistribuStream" \
      org.opencontainers.image.description="Peercasting: tracker, seeder, checksum service, dashboard and dsclient in one image" \
      org.opencontainers.image.licenses="MIT"
# tini as PID 1: forwards signals, reaps zombies. /data is the writable place (keys,
# media, live state): its folders belong to the runtime user, so that a fresh named
# volume mounted on one of them does too.
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
  && rm -rf /var/lib/apt/lists/* \
  && mkdir -p /data/keys /data/media /data/state \
  && chown -R node:node /data
WORKDIR /app
COPY --from=deps /deps/ ./
COPY --from=build /out/ ./
RUN ln -s /app/cmd/distribustream/bin/distribustream.js /usr/local/bin/distribustream \
  && ln -s /app/packages/client/bin/dsclient.js /usr/local/bin/dsclient
ENV NODE_ENV=production
# metrics, /healthz and /livez on every interface in a container (Prometheus and probes come
# from outside it); the standalone commands keep them on loopback
ENV DS_METRICS_HOST=0.0.0.0
# 6086 tracker (PDTP), 6087 dashboard, 6088 checksum (gRPC), 8000 seeder data plane,
# 9086-9088 metrics of the tracker, seeder and checksum service
EXPOSE 6086 6087 6088 8000 9086 9087 9088
# probes are per service (compose healthcheck:, Kubernetes probes): `distribustream healthcheck …`
HEALTHCHECK NONE
USER node
WORKDIR /data
ENTRYPOINT ["tini", "--", "distribustream"]
CMD ["--help"]
