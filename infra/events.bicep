// Event Grid subscriptions that deliver to the `discovery_events` function. Deployed by the azd
// postdeploy hook (scripts/postdeploy.sh): an AzureFunction endpoint is validated against the
// deployed function, so it cannot be created before the code exists. The AzureFunction endpoint
// type needs no webhook key (Event Grid resolves the function's eventgrid_extension key itself).
targetScope = 'resourceGroup'

param functionAppName string
param discoveryTopicName string
param storageAccountName string
@description('Graph change-notification partner topic (activated by scripts/postdeploy.sh); empty: none.')
param graphPartnerTopicName string = ''

var functionName = 'discovery_events'
// ARM validates names of skipped resources too: never let the partner topic segment be empty.
var partnerTopicName = empty(graphPartnerTopicName) ? 'none' : graphPartnerTopicName
var deadLetterContainerName = 'eventgrid-deadletter'

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource discoveryTopic 'Microsoft.EventGrid/topics@2022-06-15' existing = {
  name: discoveryTopicName
}

// Admin-requested full discovery: CMBootstrap.DiscoveryRequested on the custom topic.
resource discoveryRequested 'Microsoft.EventGrid/topics/eventSubscriptions@2022-06-15' = {
  parent: discoveryTopic
  name: 'discovery-requested'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.id}/functions/${functionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'CMBootstrap.DiscoveryRequested'
      ]
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storage.id
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

resource graphPartnerTopic 'Microsoft.EventGrid/partnerTopics@2022-06-15' existing = {
  name: partnerTopicName
}

// Entra ID user and group changes from the Microsoft Graph partner topic start a delta discovery
// of that resource; lifecycle events keep the app's Graph subscriptions alive.
resource graphUserChanges 'Microsoft.EventGrid/partnerTopics/eventSubscriptions@2022-06-15' = if (!empty(graphPartnerTopicName)) {
  parent: graphPartnerTopic
  name: 'graph-user-changes'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.id}/functions/${functionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    // No type filter: the topic carries only the app's own subscriptions (users, groups), and
    // lifecycle events must reach the function whatever Graph names them.
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}
