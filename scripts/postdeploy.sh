#!/bin/sh
# azd postdeploy: subscribe `discovery_events` to Event Grid (infra/events.bicep). Runs after the
# code is deployed because Event Grid validates an AzureFunction endpoint against the live function.
# Re-run any time (idempotent): `azd hooks run postdeploy`.
#
# Graph change notifications (GRAPH_PARTNER_TOPIC_NAME, an output of infra/main.bicep; empty when
# graphEvents is false), once: authorize Microsoft Graph as an Event Grid partner of the resource
# group (the partner configuration), run `graph_subscriptions` so the app creates its Graph
# subscriptions (Graph creates the partner topic on the first one), activate the topic. After
# that the app renews and recreates its own subscriptions; nothing here needs to run again.
set -eu
: "${AZURE_RESOURCE_GROUP:?run azd provision first}"
: "${AZURE_FUNCTION_APP_NAME:?run azd provision first}"
: "${DISCOVERY_TOPIC_NAME:?run azd provision first}"
: "${STORAGE_ACCOUNT_NAME:?run azd provision first}"

# The host indexes functions shortly after a deployment: wait (bounded) until it lists ours.
deadline=$(( $(date +%s) + 300 ))
until az functionapp function show --resource-group "$AZURE_RESOURCE_GROUP" \
    --name "$AZURE_FUNCTION_APP_NAME" --function-name discovery_events \
    --only-show-errors --output none 2>/dev/null; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "postdeploy: discovery_events is not listed on $AZURE_FUNCTION_APP_NAME after 5 minutes" >&2
    exit 1
  fi
  sleep 10
done

graph_topic=${GRAPH_PARTNER_TOPIC_NAME:-}
topic_state() {
  az eventgrid partner topic show --resource-group "$AZURE_RESOURCE_GROUP" --name "$graph_topic" \
    --query activationState --output tsv --only-show-errors 2>/dev/null || true
}
if [ -n "$graph_topic" ] && [ "$(topic_state)" != "Activated" ]; then
  # The authorization only lets Graph create the topic; 30 days is ample for that first step.
  expires=$(date -u -d '+30 days' +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -v+30d +%Y-%m-%dT%H:%M:%SZ)
  az eventgrid partner configuration authorize --resource-group "$AZURE_RESOURCE_GROUP" \
    --partner-name MicrosoftGraphAPI --authorization-expiration-date "$expires" \
    --only-show-errors --output none
  master=$(az functionapp keys list --resource-group "$AZURE_RESOURCE_GROUP" \
    --name "$AZURE_FUNCTION_APP_NAME" --query masterKey --output tsv)
  az rest --method POST --skip-authorization-header \
    --url "${FUNCTION_APP_URL:?run azd provision first}/admin/functions/graph_subscriptions" \
    --headers "x-functions-key=$master" Content-Type=application/json --body '{"input": ""}' \
    --only-show-errors --output none
  deadline=$(( $(date +%s) + 300 ))
  until [ -n "$(topic_state)" ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "postdeploy: Graph did not create partner topic $graph_topic within 5 minutes;" \
        "see the graph_subscriptions log and /api/health (admin), then re-run this hook" >&2
      exit 1
    fi
    sleep 10
  done
  az eventgrid partner topic activate --resource-group "$AZURE_RESOURCE_GROUP" \
    --name "$graph_topic" --only-show-errors --output none
  echo "postdeploy: Graph partner topic $graph_topic activated"
fi

az deployment group create \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --name discovery-events \
  --template-file infra/events.bicep \
  --parameters functionAppName="$AZURE_FUNCTION_APP_NAME" \
               discoveryTopicName="$DISCOVERY_TOPIC_NAME" \
               storageAccountName="$STORAGE_ACCOUNT_NAME" \
               graphPartnerTopicName="$graph_topic" \
  --only-show-errors --output none
echo "postdeploy: discovery_events subscribed to $DISCOVERY_TOPIC_NAME${graph_topic:+ and $graph_topic}"
echo "postdeploy: bundles at ${BUNDLE_URL:-?}, JWKS at ${JWKS_URL:-?}"
