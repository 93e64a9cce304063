import { trackerCompliance } from './tracker-compliance.js';

trackerCompliance({
  name: 'Access Tracker',
  module: new URL('./fixtures/access-tracker-factory.js', import.meta.url),
});
